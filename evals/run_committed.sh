#!/usr/bin/env bash
# Regenerate (or resume) the committed evaluation results in evals/results/.
# Cheap methods of both datasets first, then SCR with the paper's free-text scope check (about 6x the cost of
# the others on CPU: a 50-token scope answer over 5 facts per probe). Every step resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
scr eval --suite evals/knowedit_zsre.toml --methods base,context-oracle,scr-default
scr eval --suite evals/knowedit_wiki.toml --methods base,context-oracle,scr-default
scr eval --suite evals/knowedit_zsre.toml
scr eval --suite evals/knowedit_wiki.toml
