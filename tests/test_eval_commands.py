"""The evaluation commands' shared body (scr/evaluation/command.py ``run_suite``): suite < flags for runner fields,
suite < global flags for settings, and every user error as one red line with exit status 1. These runs stop in
validation or set-up, before any model is loaded."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from scr.cli import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.output
    for text in expected:
        assert text in result.output.replace("\n", " "), result.output


@pytest.mark.parametrize("subcommand, table", [("eval", "eval"), ("retention", "retention"),
                                               ("eval-multihop", "multihop"), ("eval-docter", "docter")])
def test_each_command_reads_its_own_suite_table(tmp_path, subcommand, table):
    suite = tmp_path / "suite.toml"
    suite.write_text("[wrong]\nx = 1\n")
    one_line_error(invoke(subcommand, "--suite", str(suite)), "unknown table(s) ['wrong']", f"reads [{table}]")
    suite.write_text(f"[{table}\n")
    one_line_error(invoke(subcommand, "--suite", str(suite)), "is not valid TOML")
    one_line_error(invoke(subcommand, "--suite", str(tmp_path / "absent.toml")), "suite file not found")
    one_line_error(invoke(subcommand, "--suite", str(tmp_path)), f"suite file {tmp_path} is a directory")
    suite.write_bytes(f'[{table}]\nout = "caf\u00e9"\n'.encode("latin-1"))
    one_line_error(invoke(subcommand, "--suite", str(suite)), f"suite file {suite}:2: not UTF-8 text (byte 0xe9)")
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a folder")
    data = ["--data", "knowedit/zsre_test.json"] if subcommand == "eval" else []
    one_line_error(invoke(subcommand, *data, "--out", str(a_file)), f"--out {a_file} is a file")


def test_required_fields_are_named():
    one_line_error(invoke("eval"), "give --data and --out (or a --suite that sets them)")
    one_line_error(invoke("eval-multihop"), "give --out (or a --suite that sets it)")


def test_flags_override_the_suite_and_global_flags_override_its_settings(tmp_path):
    suite = tmp_path / "retention.toml"
    suite.write_text(f'[retention]\nn = "0,5000"\nout = "{tmp_path / "run"}"\n')
    one_line_error(invoke("retention", "--suite", str(suite)), "N goes up to 5000, beyond the stream of 1000")
    one_line_error(invoke("retention", "--suite", str(suite), "--n", "0,2000"), "N goes up to 2000")

    suite.write_text(f'[retention]\nn = "0,5000"\nout = "{tmp_path / "run"}"\n[settings]\nscope_mode = "bogus"\n')
    one_line_error(invoke("retention", "--suite", str(suite)), "scope_mode")
    # The global flag wins over the suite's settings: set-up now fails on N instead.
    one_line_error(invoke("--scope-mode", "similarity", "retention", "--suite", str(suite)), "N goes up to 5000")


def test_field_errors_are_one_line(tmp_path):
    one_line_error(invoke("retention", "--benchmarks", "arc_easy,chess", "--out", str(tmp_path)),
                   "unknown benchmark 'chess'")
    one_line_error(invoke("eval", "--data", "x.json", "--methods", "base,nope", "--out", str(tmp_path)), "nope")
    one_line_error(invoke("eval-docter", "--method-limit", "memit-upper=x", "--out", str(tmp_path)), "expects NAME=N")


def test_the_recorded_command_leads_with_the_settings_given_as_environment_variables(monkeypatch):
    from types import SimpleNamespace

    from scr.evaluation.command import command_line

    ctx = SimpleNamespace(obj={"overrides": {"k": 3}})
    monkeypatch.delenv("SCR_CONFIG", raising=False)
    monkeypatch.setenv("SCR_SCOPE_NAME_MATCH", "last-word")
    monkeypatch.setenv("SCR_LLM", "my model")  # quoted as a shell would need it
    monkeypatch.setenv("SCR_DATA_DIR", "/data")  # not a setting: where tests find data
    line = command_line(ctx, "eval-docter", "evals/docter.toml", {"limit": 5})
    assert line == ("SCR_LLM='my model' SCR_SCOPE_NAME_MATCH=last-word "
                    "scr --k 3 eval-docter --suite evals/docter.toml --limit 5")
