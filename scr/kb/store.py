"""The knowledge base: fact records with their history (SQLite) plus a vector index (FAISS or Chroma).

Layout of a knowledge-base directory:
  scr-kb.json     manifest: format version, embedding model and its dimension
  facts.sqlite    facts (with their text and key embeddings), history events, a revision counter
  index.faiss     FAISS index of the active facts (store = faiss)
  chroma/         Chroma's files (store = chroma, no server URL)

Atomicity: the SQLite transaction is the commit point of every write. Embedding happens before it, the
index is updated inside it (and undone on failure), and on open the index is reconciled with the database,
so a write that fails or is killed at any point leaves the previous state, and never a half-ingested file.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from scr.kb.index import ChromaIndex, FaissIndex, VectorIndex
from scr.kb.records import Fact, FactEvent, FactHit, FactInput, fact_key, normalize_text, utcnow
from scr.models import DEFAULT_EMBEDDER, canonical_embedder
from scr.names import names_whole

FORMAT = "scr-kb"
FORMAT_VERSION = 1
MANIFEST = "scr-kb.json"

Progress = Callable[[int, int], None]


class KBError(ValueError):
    pass


class FactNotFound(KBError, LookupError):
    pass


class IncompatibleStore(KBError):
    pass


@dataclass
class IngestReport:
    added: list[Fact] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # texts already stored (or repeated in the input)
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (old id, new id)
    errors: list[str] = field(default_factory=list)  # skipped invalid lines (with skip_invalid)
    # (new id, active id) pairs that may contradict each other (scr/conflicts.py); filled by Engine.add_facts
    conflicts: list[tuple[str, str]] = field(default_factory=list)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    text TEXT NOT NULL,
    norm_text TEXT NOT NULL,
    key TEXT NOT NULL,
    subject TEXT, relation TEXT, object TEXT, source TEXT,
    created_at TEXT NOT NULL,
    valid_from TEXT,
    status TEXT NOT NULL,
    supersedes TEXT,
    superseded_by TEXT,
    text_vec BLOB NOT NULL,
    key_vec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_norm ON facts(norm_text, status);
CREATE INDEX IF NOT EXISTS facts_sr ON facts(subject, relation, status);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    fact_id TEXT NOT NULL, at TEXT NOT NULL, event TEXT NOT NULL, detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_FACT_COLUMNS = ("id, text, key, subject, relation, object, source, created_at, valid_from, status, "
                 "supersedes, superseded_by")


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class KnowledgeBase:
    """Facts, their history and their vector index in one directory.

    ``embedder`` is anything with ``embed(texts, progress) -> np.ndarray`` and ``dim``; it may be given as a
    zero-argument factory so that commands which do not embed (list, show, retract) never load it.
    """

    def __init__(self, directory: str | Path, embedder, embedder_name: str = DEFAULT_EMBEDDER,
                 store: str = "faiss", chroma_url: str | None = None, create: bool = True):
        self.dir = Path(directory).expanduser()
        self._embedder = embedder
        self.embedder_name = canonical_embedder(embedder_name)
        self.store = store
        self.chroma_url = chroma_url
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        self._index_revision = -1
        self._open(create)

    # ----- opening -------------------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        manifest_path = self.dir / MANIFEST
        if self.dir.exists() and not self.dir.is_dir():
            raise KBError(f"{self.dir} is a file; a knowledge base is a directory")
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise IncompatibleStore(f"{manifest_path} is corrupt (not JSON)") from None
            if manifest.get("format") != FORMAT:
                raise IncompatibleStore(f"{self.dir} is not an SCR knowledge base ({manifest_path} format "
                                        f"{manifest.get('format')!r})")
            if manifest.get("format_version") != FORMAT_VERSION:
                raise IncompatibleStore(
                    f"{self.dir} was written by an incompatible version of scr (store format "
                    f"{manifest.get('format_version')!r}; this version reads format {FORMAT_VERSION})")
            if canonical_embedder(manifest.get("embedder", "")) != self.embedder_name:
                raise IncompatibleStore(
                    f"{self.dir} was built with embedder {manifest.get('embedder')!r}, not "
                    f"{self.embedder_name!r}: choose that embedder (--embedder), or move the facts to a new "
                    f"knowledge base (`scr --kb {self.dir} --embedder {manifest.get('embedder')} kb export > "
                    f"facts.jsonl`, then `kb add facts.jsonl` there)")
            self.dim = int(manifest["dim"])
        else:
            if not create:
                raise KBError(f"no knowledge base at {self.dir} (add facts first: scr --kb {self.dir} kb add FILE)")
            if self.dir.exists() and any(p for p in self.dir.iterdir() if p.name != "scr.toml"):
                raise IncompatibleStore(f"{self.dir} is not empty and is not an SCR knowledge base")
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dim = int(self.embedder.dim)
            tmp = manifest_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                       "embedder": self.embedder_name, "dim": self.dim,
                                       "created_at": utcnow().isoformat()}, indent=2))
            tmp.replace(manifest_path)
        self._db = sqlite3.connect(self.dir / "facts.sqlite", isolation_level=None, check_same_thread=False,
                                   timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            # The database is the only copy of the facts (the vector index is derived from it): never rewrite it.
            raise IncompatibleStore(f"{self.dir / 'facts.sqlite'} cannot be read ({exc}): it holds the facts; "
                                    "restore it from a backup") from None

    @property
    def embedder(self):
        if callable(self._embedder) and not hasattr(self._embedder, "embed"):
            self._embedder = self._embedder()
        return self._embedder

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----- index bookkeeping -------------------------------------------------------------------------
    def _revision(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
        return int(row[0]) if row else 0

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            if self.store == "chroma":
                self._index = ChromaIndex(self.dim, path=None if self.chroma_url else self.dir / "chroma",
                                          url=self.chroma_url)
            elif self.store == "faiss":
                self._index = FaissIndex(self.dir / "index.faiss", self.dim)
            else:
                raise KBError(f"unknown vector store {self.store!r} (faiss or chroma)")
        return self._index

    def _sync_index(self, force: bool = False) -> None:
        """Make the index hold exactly the active facts of the database (after a crash, or another writer)."""
        revision = self._revision()
        if not force and revision == self._index_revision:
            return
        index = self.index
        active = {r for (r,) in self._db.execute("SELECT rowid FROM facts WHERE status='active'")}
        present = index.ids()
        missing = sorted(active - present)
        if missing:
            vectors = self._vectors(missing, "text_vec")
            index.add(missing, vectors)
        extra = sorted(present - active)
        index.remove(extra)
        if missing or extra:
            index.persist()
        self._index_revision = revision

    def _vectors(self, rowids: Sequence[int], column: str) -> np.ndarray:
        found = {}
        for start in range(0, len(rowids), 500):
            chunk = list(rowids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for rowid, blob in self._db.execute(f"SELECT rowid, {column} FROM facts WHERE rowid IN ({marks})", chunk):
                found[rowid] = np.frombuffer(blob, dtype=np.float32)
        return np.stack([found[r] for r in rowids]) if rowids else np.zeros((0, self.dim), np.float32)

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Cursor, list, list]]:
        """One atomic write: yields (cursor, index additions [(rowid, vector)], index removals [rowid])."""
        with self._lock, open(self.dir / ".lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # one writer at a time, across processes too
            self._sync_index()
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            additions: list[tuple[int, np.ndarray]] = []
            removals: list[int] = []
            try:
                yield cur, additions, removals
                revision = self._revision() + 1
                cur.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('revision', ?)", (str(revision),))
                if additions:
                    self.index.add([a[0] for a in additions], np.stack([a[1] for a in additions]))
                self.index.remove(removals)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                self._index_revision = -1  # the index may hold part of this write: reconcile before next use
                if self._index is not None:
                    try:
                        self._index.reload()
                        self._sync_index(force=True)
                    except Exception:
                        pass  # reconciled again on the next read or write; report the original error
                raise
            self._index_revision = revision
            self.index.persist()

    # ----- reads ---------------------------------------------------------------------------------------
    @staticmethod
    def _fact(row) -> Fact:
        names = [c.strip() for c in _FACT_COLUMNS.split(",")]
        return Fact(**{n: v for n, v in zip(names, row) if v is not None})

    def get(self, fact_id: str) -> Fact:
        # Reads take the lock too: they share the connection, and must not see a write in progress.
        with self._lock:
            row = self._db.execute(f"SELECT {_FACT_COLUMNS} FROM facts WHERE id=?", (fact_id,)).fetchone()
        if row is None:
            raise FactNotFound(f"unknown fact id: {fact_id!r}")
        return self._fact(row)

    def list(self, status: str | None = "active", limit: int | None = None, offset: int = 0) -> list[Fact]:
        """Facts in insertion order; ``status=None`` lists every fact, history included."""
        if limit is not None and limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit!r}, offset={offset!r}")
        where, args = ("WHERE status=?", [status]) if status else ("", [])
        sql = f"SELECT {_FACT_COLUMNS} FROM facts {where} ORDER BY rowid LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, args + [limit if limit is not None else -1, offset]).fetchall()
        return [self._fact(r) for r in rows]

    def count(self, status: str | None = "active") -> int:
        with self._lock:
            if status:
                return self._db.execute("SELECT COUNT(*) FROM facts WHERE status=?", (status,)).fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM facts").fetchone()[0]

    def events(self, fact_id: str) -> list[FactEvent]:
        with self._lock:
            rows = self._db.execute("SELECT fact_id, at, event, detail FROM events WHERE fact_id=? ORDER BY seq",
                                    (fact_id,)).fetchall()
        return [FactEvent(fact_id=f, at=a, event=e, detail=d) for f, a, e, d in rows]

    def history(self, fact_id: str) -> list[tuple[Fact, list[FactEvent]]]:
        """The supersession chain through this fact, oldest first, each with its events."""
        fact = self.get(fact_id)
        chain = [fact]
        seen = {fact.id}
        while chain[0].supersedes and chain[0].supersedes not in seen:
            chain.insert(0, self.get(chain[0].supersedes))
            seen.add(chain[0].id)
        while chain[-1].superseded_by and chain[-1].superseded_by not in seen:
            chain.append(self.get(chain[-1].superseded_by))
            seen.add(chain[-1].id)
        return [(f, self.events(f.id)) for f in chain]

    def key_vectors(self, fact_ids: Sequence[str]) -> np.ndarray:
        """The stored key embeddings of these facts, in order (no embedding model needed)."""
        with self._lock:
            rows = {}
            for start in range(0, len(fact_ids), 500):  # SQLite caps the parameters of one statement
                chunk = list(fact_ids[start : start + 500])
                rows.update(self._db.execute(f"SELECT id, rowid FROM facts WHERE id IN ({','.join('?' * len(chunk))})",
                                             chunk))
            missing = [i for i in fact_ids if i not in rows]
            if missing:
                raise FactNotFound(f"unknown fact id: {missing[0]!r}")
            return self._vectors([rows[i] for i in fact_ids], "key_vec")

    def search(self, queries: Sequence[str], k: int = 5) -> list[list[FactHit]]:
        return self.search_vectors(self.embedder.embed(list(queries)), k)

    def search_vectors(self, query_vectors: np.ndarray, k: int = 5) -> list[list[FactHit]]:
        """Top-k active facts (valid now) per query, with cosine to the fact text and to the fact key."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        with self._lock:
            self._sync_index()
            now = utcnow().isoformat()
            # Facts not yet valid sit in the index; fetch enough extra hits to skip over them.
            pending = self._db.execute("SELECT COUNT(*) FROM facts WHERE status='active' AND valid_from > ?",
                                       (now,)).fetchone()[0]
            raw = self.index.search(query_vectors, k + pending)
            rowids = sorted({r for hits in raw for r, _ in hits})
            rows = {}
            for start in range(0, len(rowids), 500):
                chunk = rowids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                        f"SELECT rowid, id, text, valid_from, status, key_vec, key, subject, relation, object "
                        f"FROM facts WHERE rowid IN ({marks})",
                        chunk):
                    rows[row[0]] = row
        results = []
        for qvec, hits in zip(query_vectors, raw):
            out = []
            for rowid, score in hits:
                row = rows.get(rowid)
                if row is None or row[4] != "active" or (row[3] and row[3] > now):
                    continue
                key_score = float(np.dot(qvec, np.frombuffer(row[5], dtype=np.float32)))
                out.append(FactHit(id=row[1], text=row[2], score=score, key_score=key_score, key=row[6],
                                   subject=row[7], relation=row[8], object=row[9]))
                if len(out) == k:
                    break
            results.append(out)
        return results

    def named_in(self, texts: Sequence[str], query_vectors: np.ndarray | None = None) -> list[list[FactHit]]:
        """Per text, the active facts (valid now) whose subject the text names as whole words, case-insensitive,
        longest subject first. Found by name, not by similarity: a multi-hop question names the entity its chain
        starts from, but its wording is far from any single fact about it. ``score`` and ``key_score`` are the
        cosine of the fact's text and key to the text's vector (embedded here unless given)."""
        return self._by_column(texts, query_vectors, named=True)

    def about(self, subjects: Sequence[str], query_vectors: np.ndarray) -> list[list[FactHit]]:
        """Per subject, the active facts (valid now) stored with exactly that subject (case-insensitive), scored
        against the matching query vector as in ``named_in``: where a chain of facts leads next."""
        return self._by_column(subjects, query_vectors, named=False)

    def objects_named_in(self, texts: Sequence[str], query_vectors: np.ndarray | None = None) -> list[list[FactHit]]:
        """Per text, the active facts (valid now) whose OBJECT the text names as whole words, longest object first,
        scored as in ``named_in``: the facts a question may ask backwards ("Who is the child of Y?" of "X's father
        is Y"; scr/inverse.py)."""
        return self._by_column(texts, query_vectors, named=True, column="object")

    def _by_column(self, texts: Sequence[str], query_vectors: np.ndarray | None, named: bool,
                   column: str = "subject") -> list[list[FactHit]]:
        texts = list(texts)
        if query_vectors is not None and len(query_vectors) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(query_vectors)} query vectors")
        now = utcnow().isoformat()
        assert column in ("subject", "object")  # a column name, never user input
        match = (f"instr(lower(?), lower({column})) > 0" if named else f"lower({column}) = lower(?)")
        sql = (f"SELECT id, text, key, subject, relation, object, text_vec, key_vec FROM facts WHERE status='active' "
               f"AND {column} IS NOT NULL AND {column} != '' AND (valid_from IS NULL OR valid_from <= ?) AND {match} "
               f"ORDER BY length({column}) DESC, rowid")
        at = 3 if column == "subject" else 5
        found = []
        for text in texts:
            with self._lock:
                rows = self._db.execute(sql, (now, text)).fetchall()
            if named:  # instr() also finds "Rome" inside "Romeo": keep whole-word mentions only
                rows = [r for r in rows if names_whole(text, r[at])]
            found.append(rows)
        if query_vectors is None:  # embedded here, and only the texts that found a fact (most find none)
            hit = [n for n, rows in enumerate(found) if rows]
            query_vectors = np.zeros((len(texts), self.dim), np.float32)
            if hit:
                query_vectors[hit] = self.embedder.embed([texts[n] for n in hit])
        return [[FactHit(id=r[0], text=r[1], key=r[2], subject=r[3], relation=r[4], object=r[5],
                         score=float(np.dot(qvec, np.frombuffer(r[6], dtype=np.float32))),
                         key_score=float(np.dot(qvec, np.frombuffer(r[7], dtype=np.float32))))
                 for r in rows] for rows, qvec in zip(found, query_vectors)]

    # ----- writes --------------------------------------------------------------------------------------
    def add(self, inputs: Sequence[FactInput], progress: Progress | None = None) -> IngestReport:
        """Store new facts, skipping exact duplicates, retiring what they supersede. All or nothing."""
        report = IngestReport()
        with self._lock:
            fresh = self._plan(inputs, report)
            if not fresh:
                return report
            texts = [f.text for f in fresh]
            keys = [fact_key(f.text, f.subject, f.relation, f.object) for f in fresh]
            total = 2 * len(fresh)
            text_vecs = self.embedder.embed(texts, progress=lambda d, t: progress and progress(d, total))
            key_vecs = self.embedder.embed(keys, progress=lambda d, t: progress and progress(len(fresh) + d, total))
            now = utcnow()
            with self._write() as (cur, additions, removals):
                for fact, key, tvec, kvec in zip(fresh, keys, text_vecs, key_vecs):
                    # Checked again under the write lock: another writer may have stored it while we embedded.
                    if cur.execute("SELECT 1 FROM facts WHERE norm_text=?", (normalize_text(fact.text),)).fetchone():
                        report.duplicates.append(fact.text)
                        continue
                    old_id = fact.supersedes or self._same_subject_relation(cur, fact.subject, fact.relation)
                    if old_id:
                        self._check_active(cur, old_id, "supersede")
                    fact_id = fact.id or uuid.uuid4().hex[:12]
                    cur.execute(
                        "INSERT INTO facts (id, text, norm_text, key, subject, relation, object, source, created_at,"
                        " valid_from, status, supersedes, text_vec, key_vec)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?, 'active', ?,?,?)",
                        (fact_id, fact.text, normalize_text(fact.text), key, fact.subject, fact.relation,
                         fact.object, fact.source, now.isoformat(), _ts(fact.valid_from), old_id,
                         tvec.astype(np.float32).tobytes(), kvec.astype(np.float32).tobytes()))
                    additions.append((cur.lastrowid, tvec))
                    self._event(cur, fact_id, now, "added", fact.source)
                    if old_id:
                        removals.append(self._retire(cur, old_id, "superseded", now, f"by {fact_id}", fact_id))
                        report.superseded.append((old_id, fact_id))
                    report.added.append(Fact(id=fact_id, text=fact.text, key=key, subject=fact.subject,
                                             relation=fact.relation, object=fact.object, source=fact.source,
                                             created_at=now, valid_from=fact.valid_from, supersedes=old_id))
        return report

    def _plan(self, inputs: Sequence[FactInput], report: IngestReport) -> list[FactInput]:
        """Validate ids and supersede targets before any work; drop exact duplicates."""
        fresh: list[FactInput] = []
        seen_text: set[str] = set()
        seen_ids: set[str] = set()
        for fact in inputs:
            if not isinstance(fact, FactInput):
                raise KBError(f"expected FactInput, got {type(fact).__name__}")
            norm = normalize_text(fact.text)
            # Any stored fact counts, retired ones included: re-running an old ingest must not revive them.
            duplicate = norm in seen_text or self._db.execute(
                "SELECT 1 FROM facts WHERE norm_text=?", (norm,)).fetchone()
            if duplicate:
                report.duplicates.append(fact.text)
                continue
            if fact.id:
                if fact.id in seen_ids or self._db.execute("SELECT 1 FROM facts WHERE id=?", (fact.id,)).fetchone():
                    raise KBError(f"fact id {fact.id!r} already exists ({fact.source or 'input'})")
                seen_ids.add(fact.id)
            if fact.supersedes and fact.supersedes not in seen_ids:
                self._check_active(self._db, fact.supersedes, "supersede", where=fact.source)
            seen_text.add(norm)
            fresh.append(fact)
        return fresh

    def _check_active(self, cur, fact_id: str, action: str, where: str | None = None) -> None:
        row = cur.execute("SELECT status FROM facts WHERE id=?", (fact_id,)).fetchone()
        suffix = f" ({where})" if where else ""
        if row is None:
            raise FactNotFound(f"cannot {action} unknown fact id: {fact_id!r}{suffix}")
        if row[0] != "active":
            raise KBError(f"cannot {action} fact {fact_id!r}: it is already {row[0]}{suffix}")

    @staticmethod
    def _same_subject_relation(cur, subject: str | None, relation: str | None) -> str | None:
        """The active fact with this subject and relation (case-insensitive), if any."""
        if not (subject and relation):
            return None
        row = cur.execute(
            "SELECT id FROM facts WHERE lower(subject)=lower(?) AND lower(relation)=lower(?) AND status='active'"
            " ORDER BY rowid DESC LIMIT 1", (subject, relation)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _event(cur, fact_id: str, at: datetime, event: str, detail: str | None) -> None:
        cur.execute("INSERT INTO events (fact_id, at, event, detail) VALUES (?,?,?,?)",
                    (fact_id, at.isoformat(), event, detail))

    def _retire(self, cur, fact_id: str, status: str, at: datetime, detail: str | None,
                successor: str | None = None) -> int:
        rowid = cur.execute("SELECT rowid FROM facts WHERE id=?", (fact_id,)).fetchone()[0]
        cur.execute("UPDATE facts SET status=?, superseded_by=? WHERE id=?", (status, successor, fact_id))
        self._event(cur, fact_id, at, status, detail)
        return rowid

    def retract(self, fact_id: str, reason: str | None = None) -> Fact:
        """Remove a fact from retrieval; it stays in the history."""
        with self._write() as (cur, _additions, removals):
            self._check_active(cur, fact_id, "retract")
            removals.append(self._retire(cur, fact_id, "retracted", utcnow(), reason))
        return self.get(fact_id)

    def restore(self, fact_id: str, reason: str | None = None) -> Fact:
        """Bring a retracted fact back into retrieval (an operator's undo of ``retract``). A superseded fact is
        not restored (its successor holds its place), nor one whose subject and relation an active fact now
        holds: retract or supersede that one instead."""
        with self._write() as (cur, additions, _removals):
            row = cur.execute("SELECT status, subject, relation, superseded_by, rowid, text_vec FROM facts "
                              "WHERE id=?", (fact_id,)).fetchone()
            if row is None:
                raise FactNotFound(f"cannot restore unknown fact id: {fact_id!r}")
            status, subject, relation, successor, rowid, text_vec = row
            if status != "retracted":
                detail = f" by {successor!r}" if successor else ""
                raise KBError(f"cannot restore fact {fact_id!r}: it is {status}{detail}, not retracted")
            holder = self._same_subject_relation(cur, subject, relation)
            if holder:
                raise KBError(f"cannot restore fact {fact_id!r}: the active fact {holder!r} now holds its subject "
                              f"and relation ({subject} / {relation}); retract it first, or supersede it")
            cur.execute("UPDATE facts SET status='active' WHERE id=?", (fact_id,))
            self._event(cur, fact_id, utcnow(), "restored", reason)
            additions.append((rowid, np.frombuffer(text_vec, dtype=np.float32)))
        return self.get(fact_id)

    def supersede(self, fact_id: str, new: FactInput, progress: Progress | None = None) -> IngestReport:
        new = new.model_copy(update={"supersedes": fact_id})
        report = self.add([new], progress)
        if not report.added:
            raise KBError(f"the new text is an exact duplicate of an active fact: {new.text!r}")
        return report
