"""`scr`: a thin command-line layer over the library API (scr.engine.Engine)."""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path
from typing import List, Optional

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scr.cli_support import engine_from as _engine
from scr.cli_support import err, out
from scr.cli_support import print_json as _print_json
from scr.cli_support import progress_bar as _progress
from scr.config import validation_message
from scr.kb import FactInput, IngestError, text_lines
from scr.pipeline import QuestionError

app = typer.Typer(help="Selective Contextual Reasoning: keep an LLM's answers current without touching its weights.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
kb_app = typer.Typer(help="Manage the knowledge base of updated facts.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
models_app = typer.Typer(help="Prepare the embedded models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
MAX_CONFLICTS_SHOWN = 20  # possible conflicts printed by `kb add` (``--json`` gives them all)


@app.callback()
def main(
    ctx: typer.Context,
    kb: Optional[Path] = typer.Option(None, "--kb", help="knowledge-base directory [env SCR_KB_DIR]"),
    config: Optional[Path] = typer.Option(None, "--config", help="settings file (TOML) [env SCR_CONFIG]"),
    store: Optional[str] = typer.Option(None, "--store", help="vector store: faiss or chroma"),
    chroma_url: Optional[str] = typer.Option(None, "--chroma-url", help="Chroma server URL"),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM: embedded default, HF id or folder"),
    embedder: Optional[str] = typer.Option(None, "--embedder", help="sentence-embedding model"),
    backend: Optional[str] = typer.Option(None, "--backend", help="transformers or vllm"),
    vllm_url: Optional[str] = typer.Option(None, "--vllm-url", help="vLLM OpenAI-compatible base URL"),
    k: Optional[int] = typer.Option(None, "--k", help="facts retrieved per question"),
    scope_mode: Optional[str] = typer.Option(None, "--scope-mode",
                                             help="default (= subject-relation), relation-encoder, similarity, "
                                                  "encoder, gated-llm, llm or paper"),
    scope_threshold: Optional[float] = typer.Option(None, "--scope-threshold",
                                                    help="key-similarity threshold (default, similarity, gated-llm)"),
    scope_min_probability: Optional[float] = typer.Option(None, "--scope-min-probability",
                                                          help="scope-encoder probability threshold (encoder mode)"),
    scope_encoder: Optional[Path] = typer.Option(None, "--scope-encoder", help="scope cross-encoder adapter file"),
    answer_style: Optional[str] = typer.Option(
        None, "--answer-style", help="paper, or object-first (the answer to a question asking exactly a fact's "
                                     "relation starts with the fact's object)"),
    context_facts: Optional[int] = typer.Option(
        None, "--context-facts", help="facts an in-scope answer reads (the chosen one, then others that passed "
                                      "the scope check)"),
    scope_final_sentence: Optional[bool] = typer.Option(
        None, "--final-sentence/--no-final-sentence",
        help="check a question that no fact answers again on its last sentence, when text comes before it"),
    scope_names: Optional[bool] = typer.Option(
        None, "--name-check/--no-name-check",
        help="a fact stored without a subject (a document's sentence) answers only questions that name nothing or "
             "something it names"),
    scope_name_match: Optional[str] = typer.Option(
        None, "--name-match", help="with the name check, how a fact must name what the question names: whole-name "
                                   "(by that name or its last part, not another name ending alike) or last-word"),
    scope_name_conflicts: Optional[bool] = typer.Option(
        None, "--name-conflicts/--no-name-conflicts",
        help="a question that names another entity is out of a fact's scope: a name sharing a word with the fact's "
             "subject (\"Janice Dickinson\" for \"Angie Dickinson\"), or, when the question does not name the subject, "
             "names none of which is close to it (\"Katey Sagal\" for \"Kate Winslet\")"),
    scope_inverse: Optional[bool] = typer.Option(
        None, "--inverse/--no-inverse",
        help="answer a question that names a fact's object and asks its relation backwards (\"Who is the child of "
             "Y?\" of \"X's father is Y\") with that fact"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="answer length limit"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, ..."),
) -> None:
    overrides = dict(kb_dir=kb, store=store, chroma_url=chroma_url, llm=llm, embedder=embedder, backend=backend,
                     vllm_url=vllm_url, k=k, scope_mode=scope_mode, scope_threshold=scope_threshold,
                     scope_min_probability=scope_min_probability, scope_encoder=scope_encoder,
                     answer_style=answer_style, context_facts=context_facts,
                     scope_final_sentence=scope_final_sentence, scope_names=scope_names,
                     scope_name_conflicts=scope_name_conflicts, scope_name_match=scope_name_match,
                     scope_inverse=scope_inverse, max_new_tokens=max_new_tokens, device=device)
    ctx.obj = {"config": config, "overrides": overrides}


# ----- kb ---------------------------------------------------------------------------------------------------
@kb_app.command("add")
def kb_add(
    ctx: typer.Context,
    files: List[Path] = typer.Argument(None, help=".jsonl, .csv, .txt or .md files"),
    text: Optional[str] = typer.Option(None, "--text", help="add one fact given on the command line"),
    subject: Optional[str] = typer.Option(None, "--subject"),
    relation: Optional[str] = typer.Option(None, "--relation"),
    obj: Optional[str] = typer.Option(None, "--object"),
    supersedes: Optional[str] = typer.Option(None, "--supersedes", help="id of the fact the new one replaces"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="store the valid lines, report the rest"),
    documents: str = typer.Option("sentences", "--documents",
                                  help="how .txt/.md documents become facts: sentences (each sentence a fact) or "
                                       "atomic (short facts extracted by the LLM)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ingest facts from files (all or nothing per run), or one fact with --text."""
    if not files and text is None:
        err.print("error: give one or more FILES or --text")
        raise typer.Exit(2)
    with _engine(ctx) as engine, _progress("embedding") as progress:
        if text is not None:
            if files:
                raise IngestError("give either FILES or --text, not both")
            fact = _fact_option(text=text, subject=subject, relation=relation, object=obj, supersedes=supersedes)
            report = engine.add_facts([fact], progress=progress)
        else:
            if supersedes:
                raise IngestError("--supersedes applies to a single --text fact; in files use a 'supersedes' field")
            report = engine.ingest(files, skip_invalid=skip_invalid, progress=progress, documents=documents)
        texts = _texts(engine, report.conflicts)
    if as_json:
        _print_json({"added": [f.id for f in report.added], "duplicates": len(report.duplicates),
                     "superseded": [list(p) for p in report.superseded], "conflicts": [list(p) for p in report.conflicts],
                     "errors": report.errors})
        return
    out.print(f"added {len(report.added)} fact(s), skipped {len(report.duplicates)} duplicate(s), "
              f"superseded {len(report.superseded)}")
    for old, new in report.superseded:
        out.print(f"  {old} superseded by {new}", markup=False, highlight=False)
    if report.conflicts:
        _print_conflicts(report.conflicts, texts, err)
    for problem in report.errors:
        err.print(f"skipped invalid line: {problem}", markup=False, highlight=False)
    if len(report.added) == 1:
        out.print(f"id: {report.added[0].id}", markup=False, highlight=False)


def _fact_option(**options) -> FactInput:
    """The fact given as command-line options; a bad value is named by its option (``--text: String should
    have at least 1 character``)."""
    try:
        return FactInput(**options, source="cli")
    except ValidationError as exc:
        raise IngestError(validation_message(exc, prefix="--")) from None


def _texts(engine, pairs) -> dict[str, str]:
    return {i: engine.kb().get(i).text for pair in pairs[:MAX_CONFLICTS_SHOWN] for i in pair}


def _print_conflicts(pairs, texts: dict[str, str], console) -> None:
    console.print(f"{len(pairs)} possible conflict(s): facts that answer the same question with different objects; "
                  "retract the one that is out of date (scr kb retract ID)", highlight=False)
    for fact, other in pairs[:MAX_CONFLICTS_SHOWN]:
        console.print(f"  {fact} {texts[fact]!r}\n  {other} {texts[other]!r}", markup=False, highlight=False)
    if len(pairs) > MAX_CONFLICTS_SHOWN:
        console.print(f"  ... and {len(pairs) - MAX_CONFLICTS_SHOWN} more (--json lists them all)")


@kb_app.command("conflicts")
def kb_conflicts(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Pairs of active facts that may contradict each other: same subject, another object, and questions cannot
    tell them apart (what `kb add` reports for new facts, over the whole knowledge base)."""
    with _engine(ctx) as engine:
        pairs = engine.conflicts()
        texts = _texts(engine, pairs)
    if as_json:
        _print_json([list(pair) for pair in pairs])
    elif pairs:
        _print_conflicts(pairs, texts, out)
    else:
        out.print("no possible conflicts among the active facts")


@kb_app.command("list")
def kb_list(ctx: typer.Context, all_: bool = typer.Option(False, "--all", help="include superseded and retracted"),
            limit: Optional[int] = typer.Option(None, "--limit", min=0),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """List facts (active ones unless --all)."""
    with _engine(ctx) as engine:
        facts = engine.kb().list(status=None if all_ else "active", limit=limit)
    if as_json:
        for fact in facts:
            _print_json(fact.model_dump(mode="json"))
        return
    table = Table("id", "status", "text", show_lines=False)
    for fact in facts:
        table.add_row(Text(fact.id), fact.status, Text(fact.text))
    out.print(table)
    out.print(f"{len(facts)} fact(s)")


@kb_app.command("export")
def kb_export(ctx: typer.Context) -> None:
    """Print the active facts as JSONL that `kb add` reads back (ids, subjects, relations, objects, sources, valid
    dates): to rebuild the knowledge base under another embedder, or to copy it. History is not exported."""
    with _engine(ctx) as engine:
        facts = engine.kb().list(status="active")
    fields = [name for name in FactInput.model_fields if name != "supersedes"]  # its target is not exported
    for fact in facts:
        record = fact.model_dump(mode="json", include=set(fields), exclude_none=True)
        _print_json({name: record[name] for name in fields if name in record})


@kb_app.command("show")
def kb_show(ctx: typer.Context, fact_id: str) -> None:
    """Show one fact as JSON."""
    with _engine(ctx) as engine:
        fact = engine.kb().get(fact_id)
    _print_json(fact.model_dump(mode="json"))


@kb_app.command("history")
def kb_history(ctx: typer.Context, fact_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The supersession chain through a fact, with every event."""
    with _engine(ctx) as engine:
        chain = engine.kb().history(fact_id)
    if as_json:
        _print_json([{"fact": f.model_dump(mode="json"), "events": [e.model_dump(mode="json") for e in ev]}
                     for f, ev in chain])
        return
    for fact, events in chain:
        out.print(f"[bold]{escape(fact.id)}[/bold] ({fact.status}): {escape(fact.text)}", highlight=False)
        for event in events:
            detail = f" ({event.detail})" if event.detail else ""
            out.print(f"    {event.at.isoformat(timespec='seconds')}  {event.event}{detail}", markup=False, highlight=False)


@kb_app.command("retract")
def kb_retract(ctx: typer.Context, fact_id: str, reason: Optional[str] = typer.Option(None, "--reason")) -> None:
    """Remove a fact from retrieval (kept in history)."""
    with _engine(ctx) as engine:
        engine.retract(fact_id, reason)
    out.print(f"retracted {fact_id}", markup=False, highlight=False)


@kb_app.command("restore")
def kb_restore(ctx: typer.Context, fact_id: str, reason: Optional[str] = typer.Option(None, "--reason")) -> None:
    """Bring a retracted fact back into retrieval (undo retract)."""
    with _engine(ctx) as engine:
        engine.restore(fact_id, reason)
    out.print(f"restored {fact_id}", markup=False, highlight=False)


@kb_app.command("supersede")
def kb_supersede(ctx: typer.Context, fact_id: str, text: str = typer.Option(..., "--text"),
                 subject: Optional[str] = typer.Option(None, "--subject"),
                 relation: Optional[str] = typer.Option(None, "--relation"),
                 obj: Optional[str] = typer.Option(None, "--object")) -> None:
    """Replace a fact with a newer one."""
    with _engine(ctx) as engine:
        report = engine.supersede(fact_id, _fact_option(text=text, subject=subject, relation=relation, object=obj))
    out.print(f"{fact_id} superseded by {report.added[0].id}", markup=False, highlight=False)


@kb_app.command("search")
def kb_search(ctx: typer.Context, query: str, k: Optional[int] = typer.Option(None, "--k", min=1, max=100),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Retrieve the facts nearest to a query (no LLM)."""
    with _engine(ctx) as engine:
        if not query.strip():
            raise QuestionError("query is empty")
        hits = engine.search(query, k)
    if as_json:
        _print_json([h.model_dump() for h in hits])
        return
    table = Table("id", "score", "key score", "text")
    for h in hits:
        table.add_row(Text(h.id), f"{h.score:.3f}", f"{h.key_score:.3f}", Text(h.text))
    out.print(table)


# ----- ask ----------------------------------------------------------------------------------------------------
def _answer_json(answer) -> dict:
    return {"question": answer.question, "answer": answer.answer, "in_scope": answer.in_scope,
            "facts": [f.model_dump() for f in answer.facts], "timings": answer.timings}


@app.command()
def ask(
    ctx: typer.Context,
    question: Optional[str] = typer.Argument(None, help="the question (or --file)"),
    file: Optional[Path] = typer.Option(None, "--file", help="one question per line (batch)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per question"),
    base: bool = typer.Option(False, "--base", help="also show the unmodified model's answer"),
    multihop: bool = typer.Option(False, "--multihop", help="a question chaining several facts: walk the stored "
                                                            "links, then sub-questions (scr/multihop.py)"),
    max_hops: int = typer.Option(4, "--max-hops", min=1, max=8, help="with --multihop: links or sub-questions, "
                                                                     "at most"),
) -> None:
    """Answer with updated knowledge where a stored fact applies, as before otherwise."""
    with _engine(ctx) as engine:
        engine.kb()  # must exist: a mistyped --kb must not answer without the facts, nor leave an empty one behind
        if file is not None:
            if question is not None:
                raise QuestionError("give a QUESTION or --file, not both")
            if not file.exists():
                raise FileNotFoundError(f"questions file not found: {file}")
            questions = [line.strip() for line in text_lines(file) if line.strip()]
            if not questions:
                raise QuestionError(f"{file} holds no questions")
        elif question is not None:
            questions = [question]
        else:
            raise QuestionError("give a QUESTION or --file")
        answers = engine.ask_multihop_batch(questions, max_hops) if multihop else engine.ask_batch(questions)
        base_answers = engine.base_answers(questions) if base else None
    for n, answer in enumerate(answers):
        if as_json:
            record = _answer_json(answer)
            if multihop:
                record.update(stop=answer.stop, hops=[{"question": h.question, "answer": h.answer,
                                                       "fact": h.fact.model_dump() if h.fact else None,
                                                       "written_by": h.written_by} for h in answer.hops])
            if base_answers is not None:
                record["base_answer"] = base_answers[n]
            _print_json(record)
            continue
        out.print(answer.answer, highlight=False, markup=False)
        if multihop:
            for h in answer.hops:
                source = f"fact {h.fact.id}: {h.fact.text}" if h.fact else h.answer
                err.print(f"[dim]  {h.written_by}: {escape(h.question)} -> {escape(source)}[/dim]", highlight=False)
            if not answer.facts:
                err.print("[dim](no stored fact applies)[/dim]", highlight=False)
        else:
            used = f"fact {answer.facts[0].id}: {answer.facts[0].text}" if answer.facts else "no stored fact applies"
            err.print(f"[dim]({escape(used)})[/dim]", highlight=False)
        if base_answers is not None:
            err.print(f"[dim]unmodified model: {escape(base_answers[n])}[/dim]", highlight=False)


# ----- quick start -------------------------------------------------------------------------------------------
def _sample_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "knowledge_base"


@app.command()
def quickstart(
    ctx: typer.Context,
    sample: Path = typer.Option(None, "--sample", help="sample folder (facts.jsonl, updates.jsonl, questions.jsonl)"),
) -> None:
    """Ingest the sample knowledge base and compare the unmodified model with SCR on its questions."""
    sample = sample or _sample_dir()
    with tempfile.TemporaryDirectory(prefix="scr-quickstart-") as tmp:
        extra = {} if ctx.obj["overrides"].get("kb_dir") else {"kb_dir": Path(tmp) / "kb"}
        with _engine(ctx, **extra) as engine:
            questions = _sample_questions(sample)
            kb_dir = engine.settings.kb_dir
            with _progress("ingesting sample facts") as progress:
                first = engine.ingest([sample / "facts.jsonl"], progress=progress)
                later = engine.ingest([sample / "updates.jsonl"], progress=progress)
            out.print(f"knowledge base {kb_dir}: {len(first.added)} facts, then {len(later.added)} updates "
                      f"({len(later.superseded)} superseded older facts)")
            texts = [q["question"] for q in questions]
            with err.status("answering with the unmodified model and with SCR..."):
                base_answers = engine.base_answers(texts)
                answers = engine.ask_batch(texts)
    table = Table("question", "unmodified model", "SCR", "fact used", show_lines=True)
    updated = unchanged = scoped = 0
    for q, b, a in zip(questions, base_answers, answers):
        table.add_row(Text(q["question"]), Text(b), Text(a.answer), Text(a.facts[0].text if a.facts else "-"))
        scoped += a.in_scope == bool(q.get("expect"))
        if q.get("expect") and q["expect"].lower() in a.answer.lower():
            updated += 1
        if not q.get("expect") and not a.in_scope and a.answer == b:
            unchanged += 1
    out.print(table)
    n_in = sum(1 for q in questions if q.get("expect"))
    out.print(f"scope decisions right: {scoped}/{len(questions)}; updated answers: {updated}/{n_in} in-scope "
              f"questions; unchanged answers: {unchanged}/{len(questions) - n_in} out-of-scope questions")


def _sample_questions(sample: Path) -> list[dict]:
    """The sample's questions ({"question", "expect"?} per line), after checking the folder has all three files."""
    missing = [name for name in ("facts.jsonl", "updates.jsonl", "questions.jsonl") if not (sample / name).is_file()]
    if missing:
        raise IngestError(f"{sample}: no {', '.join(missing)} (a sample folder holds facts.jsonl, updates.jsonl "
                          "and questions.jsonl)")
    path = sample / "questions.jsonl"
    questions = []
    for number, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise IngestError(f"{path}:{number}: expected an object with a 'question' string")
        questions.append(record)
    return questions


@models_app.command("prepare")
def models_prepare() -> None:
    """Convert the embedded SmolLM2 to a safetensors cache and check both embedded models load."""
    from scr.models import DEFAULT_EMBEDDER, export_smollm2, resolve_embedder

    with err.status("converting SmolLM2-135M-Instruct (once)..."):
        path = export_smollm2()
    out.print(f"LLM: {path}")
    out.print(f"embedder: {resolve_embedder(DEFAULT_EMBEDDER)}")


# Entry points that live beside the parts they drive; each module exposes `command` and imports its heavy
# dependencies inside it, so `scr kb ...` stays fast.
for _module, _name in (("scr.api.command", "serve"), ("scr.evaluation.command", "eval"),
                       ("scr.evaluation.retention_command", "retention"),
                       ("scr.evaluation.multihop_command", "eval-multihop"),
                       ("scr.evaluation.docter_command", "eval-docter"),
                       ("scr.editing.command", "edit")):
    try:
        app.command(_name)(importlib.import_module(_module).command)
    except ModuleNotFoundError as exc:
        if not exc.name or not _module.startswith(exc.name):  # a missing dependency is a real error
            raise


if __name__ == "__main__":
    app()
