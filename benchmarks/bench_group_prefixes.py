"""What group prefixes save in a real evaluation: the same `scr eval` run with them off, then on.

    python benchmarks/bench_group_prefixes.py [--suite evals/knowedit_wiki.toml] [--method scr-default] [--limit 128]

Both runs start from empty run directories (no memo), one after the other in this process, with the suite's
settings and the embedded models. Prints each run's evaluation seconds, the speed-up, and how many of the
answers are identical (they should all be).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scr.config import Settings
from scr.evaluation.config import load_suite, make_config
from scr.evaluation.runner import Evaluator
from scr.llm.hf import TransformersBackend
from scr.models import set_offline_env


def answers(run_dir: Path, method: str) -> dict:
    out = {}
    with open(run_dir / "records" / f"{method}.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["type"] == "case":
                out.update({(row["case_id"], i): p["answer"] for i, p in enumerate(row["probes"])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="evals/knowedit_wiki.toml")
    parser.add_argument("--method", default="scr-default")
    parser.add_argument("--limit", type=int, default=128)
    args = parser.parse_args()
    set_offline_env()
    fields, settings_fields = load_suite(args.suite)
    settings = Settings.load(None, **settings_fields)
    seconds, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for groups in (False, True):
            TransformersBackend.group_prefixes = groups
            out = Path(tmp) / ("on" if groups else "off")
            config = make_config(**{**fields, "methods": [args.method], "limit": args.limit, "out": str(out)})
            t0 = time.perf_counter()
            Evaluator(config, settings, command="benchmarks/bench_group_prefixes.py", log=lambda msg: print(" ", msg, flush=True),
                      progress=False).run()
            seconds[groups] = time.perf_counter() - t0
            runs[groups] = answers(out, args.method)
    TransformersBackend.group_prefixes = True
    same = sum(runs[True][k] == runs[False].get(k) for k in runs[True])
    print(f"{args.suite}, {args.method}, first {args.limit} cases, {len(runs[True])} probes")
    print(f"without group prefixes {seconds[False]:.1f} s, with {seconds[True]:.1f} s: "
          f"{seconds[False] / seconds[True]:.2f}x; identical answers {same}/{len(runs[True])}")


if __name__ == "__main__":
    main()
