"""`scr eval` end to end on real KnowEdit ZsRE records with the embedded models; metrics recomputed by hand
from the recorded answers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import DATA_DIR

ZSRE = DATA_DIR / "knowedit" / "zsre_test.json"
pytestmark = pytest.mark.data  # nearly every test here reads the real file


def _rows(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _hand_contains(answer: str, aliases: list[str]) -> float:
    return float(any(a.lower() in answer.lower() for a in aliases))


@pytest.fixture(scope="module")
def zsre_run(tmp_path_factory, smollm2_dir):
    from scr.cli import app

    out = tmp_path_factory.mktemp("eval") / "zsre"
    args = ["eval", "--data", str(ZSRE), "--methods", "base,context-oracle,scr,scr-paper-answers", "--protocol",
            "sequential",
            "--n", "all", "--limit", "2", "--mode", "generation", "--max-new-tokens", "16", "--out", str(out),
            "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, args


def test_reports_written(zsre_run):
    out, _ = zsre_run
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"base", "context-oracle", "scr", "scr-paper-answers"}
    for name, m in report["methods"].items():
        metrics = m["metrics"]
        for kind in ("reliability", "generalization", "locality", "portability"):
            assert 0.0 <= metrics[kind] <= 1.0, (name, kind)
        assert m["n"] == 2 and m["complete"] and len(m["cases"]) == 2
        assert m["cost"]["wall_s"] >= 0 and m["cost"]["peak_rss_mb"] > 0
    assert "scope_accuracy" in report["methods"]["scr"]["metrics"]
    run = report["run"]
    assert run["data"] == "knowedit/zsre_test.json" and run["max_new_tokens"] == 16
    assert run["command"].startswith("scr eval --data ") and "--limit 2" in run["command"]
    assert (out / "report.md").read_text().count("| **reliability** |") == 1
    assert (out / "metrics.png").exists()


def test_metrics_match_hand_computation(zsre_run):
    out, _ = zsre_run
    report = json.loads((out / "report.json").read_text())
    cases = {c.case_id: c for c in __import__("scr.evaluation.data", fromlist=["load_cases"]).load_cases(ZSRE, limit=2)}
    base_rows = {r["case_id"]: r for r in _rows(out / "records/base.jsonl") if r["type"] == "case"}
    base_answer = {p["prompt"]: p["answer"] for r in base_rows.values() for p in r["probes"]}
    saw_false = False
    for name in ("base", "context-oracle", "scr", "scr-paper-answers"):
        rows = [r for r in _rows(out / f"records/{name}.jsonl") if r["type"] == "case"]
        by_kind: dict[str, list[float]] = {}
        for r in rows:
            case = cases[r["case_id"]]
            per_kind: dict[str, list[float]] = {}
            for p, probe in zip(r["probes"], case.probes):
                assert p["prompt"] == probe.prompt
                if probe.in_scope:
                    expected = _hand_contains(p["answer"], probe.aliases)
                    saw_false |= expected == 0.0
                else:
                    expected = float(p["answer"].strip() == base_answer[probe.prompt].strip())
                assert p["score"] == expected, (name, p)
                per_kind.setdefault(probe.kind, []).append(expected)
            for kind, values in per_kind.items():
                by_kind.setdefault(kind, []).append(sum(values) / len(values))
        metrics = report["methods"][name]["metrics"]
        for kind, values in by_kind.items():
            assert metrics[kind] == pytest.approx(sum(values) / len(values), abs=1e-4), (name, kind)
    assert saw_false  # at least one in-scope answer lacks its target (the unmodified model's, at least)

    # The unmodified model does not know the counterfactual target: contains is false, and so is the score.
    first = base_rows["0"]["probes"][0]
    assert first["kind"] == "reliability" and "noctuidae" not in first["answer"].lower() and first["score"] == 0.0
    assert report["methods"]["base"]["metrics"]["locality"] == 1.0


def test_scr_scope_decisions(zsre_run):
    out, _ = zsre_run
    scr_rows = [r for r in _rows(out / "records/scr.jsonl") if r["type"] == "case"]
    paper_rows = [r for r in _rows(out / "records/scr-paper-answers.jsonl") if r["type"] == "case"]
    oracle = {(r["case_id"], p["prompt"]): p for r in _rows(out / "records/context-oracle.jsonl")
              if r["type"] == "case" for p in r["probes"]}
    for r, paper in zip(scr_rows, paper_rows):
        edit = r["probes"][0]
        # The edit prompt is the stored fact's key: the default scope check accepts it with the case's own fact,
        # and asks exactly its relation, so the default (object-first) answer starts with the new object.
        assert edit["in_scope"] and edit["own_fact"]
        assert edit["answer"].lower().startswith(edit["targets"][0].lower())
        # The answer style changes answers only: every scope decision is the same.
        assert [p["in_scope"] for p in r["probes"]] == [p["in_scope"] for p in paper["probes"]]
        for p in paper["probes"]:
            assert isinstance(p["in_scope"], bool)
            if p.get("own_fact") and p["kind"] != "locality":
                # The same prompt as the oracle's (the paper's answer prompt with that fact): the same answer.
                assert p["answer"] == oracle[(r["case_id"], p["prompt"])]["answer"]
    report = json.loads((out / "report.json").read_text())
    probes = [p for r in scr_rows for p in r["probes"]]
    accepted = [p["in_scope"] for p in probes if p["kind"] != "locality"]
    rejected = [not p["in_scope"] for p in probes if p["kind"] == "locality"]
    m = report["methods"]["scr"]["metrics"]
    assert m["scope.accept_rate"] == pytest.approx(sum(accepted) / len(accepted), abs=1e-4)
    assert m["scope_accuracy"] == pytest.approx((sum(accepted) / len(accepted) + sum(rejected) / len(rejected)) / 2,
                                                abs=1e-4)


def test_rerun_resumes_without_work(zsre_run):
    from scr.cli import app

    out, args = zsre_run
    before = (out / "records/scr.jsonl").read_text()
    result = CliRunner().invoke(app, args[:-1])  # not quiet: it says there is nothing to run
    assert result.exit_code == 0, result.output
    assert "nothing to run" in result.output and "loading" not in result.output
    assert (out / "records/scr.jsonl").read_text() == before

    # Finishing a run one method at a time must not drop the other methods' rows from the rebuilt report.
    only_base = list(args)
    only_base[only_base.index("--methods") + 1] = "base"
    result = CliRunner().invoke(app, only_base)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert list(report["methods"]) == ["base", "context-oracle", "scr", "scr-paper-answers"]


def test_teacher_forced_matches_backend(tmp_path, smol_backend):
    from scr.evaluation import EvalConfig
    from scr.evaluation.data import load_cases
    from scr.evaluation.runner import Evaluator

    config = EvalConfig(data=str(ZSRE), methods=["base"], limit=1, mode="teacher-forced", out=str(tmp_path / "tf"))
    report = Evaluator(config, backend=smol_backend, log=lambda m: None, progress=False).run()
    case = load_cases(ZSRE, limit=1)[0]
    by_hand = smol_backend.token_logprobs([case.prompt], [" " + case.target_new])[0]
    assert report["methods"]["base"]["metrics"]["reliability"] == pytest.approx(
        sum(by_hand.greedy) / len(by_hand.greedy), abs=1e-4)
    assert report["methods"]["base"]["metrics"]["locality"] == 1.0


def test_cli_errors_are_one_line(tmp_path):
    from scr.cli import app

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p"}\n')
    result = CliRunner().invoke(app, ["eval", "--data", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "bad.jsonl line 1: missing or empty 'target_new'" in result.output
    result = CliRunner().invoke(app, ["eval", "--data", str(ZSRE), "--methods", "base,nope", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "unknown method 'nope'" in result.output
    result = CliRunner().invoke(app, ["eval", "--data", str(ZSRE), "--mode", "teacher_forced", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "mode" in result.output
