"""One evaluator for SCR and every comparator: same cases, probes, metrics and protocols, with reports.

    from scr.evaluation import EvalConfig, Evaluator
    report = Evaluator(EvalConfig(data="knowedit/zsre_test.json", methods=["base", "scr"], limit=5,
                                  out="runs/zsre")).run()
    report["methods"]["scr"]["metrics"]["reliability"]

The CLI is ``scr eval`` (scr/evaluation/command.py). Heavy modules are imported lazily.
"""

from scr.evaluation.config import EvalConfig, EvalConfigError, load_suite, make_config
from scr.evaluation.data import Case, DatasetError, Probe, fact_text, load_cases

__all__ = ["EvalConfig", "EvalConfigError", "Evaluator", "Case", "Probe", "DatasetError", "fact_text", "load_cases",
           "load_suite", "make_config"]


def __getattr__(name):
    if name == "Evaluator":
        from scr.evaluation.runner import Evaluator

        return Evaluator
    raise AttributeError(name)
