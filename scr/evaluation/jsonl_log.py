"""Append-only JSONL logs (evaluation records, the LLM memo): what an interrupted run leaves is kept.

A run killed in the middle of a write leaves its last line cut short. Reading skips such a line; appending
first ends it with a newline, so the next row starts a line of its own instead of joining the broken one
(which would make that row unreadable too).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    """The rows of ``path`` (none if it does not exist), skipping lines cut short by an interruption."""
    rows = []
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def append_rows(path: Path, rows: list[dict], sync: bool = False) -> None:
    """Append ``rows`` as lines; ``sync`` waits until they are on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fh.tell() > 0:  # "a+" opens at the end
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def sessions_path(out: Path) -> Path:
    return out / "records" / "_sessions.jsonl"


def append_session(out: Path, seconds: float, command: str, **extra) -> None:
    """One line per run of an evaluation folder: when, how long, which command (reports sum and list them)."""
    append_rows(sessions_path(out), [{"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                      "seconds": round(seconds, 2), "command": command, **extra}])


def read_sessions(out: Path) -> list[dict]:
    return read_rows(sessions_path(out))


def reported_command(out: Path, command: str, settings) -> str:
    """The command a rebuilt report (``--report-only``) names: the one that produced the records, saved in
    ``out/config.json``, where this rebuild has the same settings; else this command, which names the settings
    that differ (``SCR_*`` variables lead it), since those select which records the report reads."""
    saved = out / "config.json"
    if not saved.exists():
        return command
    config = json.loads(saved.read_text())
    before, now = config.get("settings") or {}, json.loads(settings.model_dump_json())
    # Settings added since the records were made are not in ``before``; only those both name can differ.
    if any(before[name] != now[name] for name in before.keys() & now.keys()):
        return command
    return config.get("command", command)
