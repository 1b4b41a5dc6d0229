"""How often the scope check's exclusion rule fires (scr/scope.py ``excludes_object``), per probe set.

The rule drops a fact when the question excludes the fact's object by name ("..., which is not Syria, is"). It
has nothing to tune; this table checks, on every probe set, that it fires where the question asks for another
value of the edited relation (KnowEdit WikiData_counterfact ``Forgetfulness``) and nowhere else. Pairs are
(probe, its own case's fact object); no model, no retrieval. The rule was designed on the train split; the test
splits' rows are reported beside it.

    python evals/exclusion_rule.py [--data-dir ../shared/data] [--out evals/results/scope_exclusion.md]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from scr.evaluation.data import data_dir, load_cases
from scr.scope import excludes_object

SPLITS = [("train", "knowedit/wiki_counterfact_train.json"), ("train", "counterfact/counterfact_train.json"),
          ("test", "knowedit/wiki_counterfact_test.json"), ("test", "knowedit/zsre_test.json")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="evals/results/scope_exclusion.md")
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    lines = ["# Scope exclusion rule: where it fires", "",
             "Command: `python evals/exclusion_rule.py`. Pairs = (probe, its own case's new object); a probe "
             "excluded by the rule is answered by the unmodified model when no other fact passes.", "",
             "| split | data | probe set | probes | rule fires | share |", "|---|---|---|---:|---:|---:|"]
    for split, rel in SPLITS:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for case in load_cases(root / rel):
            for probe in case.probes:
                name = probe.kind + (f".{probe.sub}" if probe.sub else "")
                counts[name][0] += 1
                counts[name][1] += excludes_object(probe.prompt, case.target_new)
        for name, (n, fired) in sorted(counts.items()):
            lines.append(f"| {split} | `{rel}` | {name} | {n} | {fired} | {100 * fired / n:.1f}% |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
