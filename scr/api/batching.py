"""Micro-batching: concurrent questions are grouped into one ``engine.ask_batch`` call.

One worker thread takes the first waiting question, keeps collecting for up to ``max_wait_s`` (or until
``max_batch`` questions), answers them together and resolves each caller's future. While a batch runs, new
questions queue up and form the next batch, so under load batches fill by themselves and the wait adds
latency only to a lone question.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

from scr.pipeline import Answer

AnswerBatch = Callable[[Sequence[str]], list[Answer]]


@dataclass
class _Job:
    question: str
    future: Future
    queued_at: float = field(default_factory=time.perf_counter)


class QueryBatcher:
    def __init__(self, answer_batch: AnswerBatch, max_batch: int = 32, max_wait_s: float = 0.005):
        self._answer_batch = answer_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.questions = 0

    def submit(self, question: str) -> Future:
        """A future resolving to (Answer, seconds spent queued) or to the error the batch raised."""
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        self._ensure_started()
        job = _Job(question, Future())
        self._queue.put(job)
        return job.future

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="scr-query-batcher", daemon=True)
                self._thread.start()

    def _collect(self, first: _Job) -> list[_Job]:
        batch = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:  # close() was called: answer what we hold, then stop
                self._queue.put(None)
                break
            batch.append(job)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Callers that went away (cancelled futures) are dropped before any work is done for them.
            batch = [job for job in self._collect(first) if job.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                answers = self._answer_batch([job.question for job in batch])
            except BaseException as exc:  # noqa: BLE001 - every caller gets the error; the worker lives on
                for job in batch:
                    job.future.set_exception(exc)
                continue
            self.batches += 1
            self.questions += len(batch)
            for job, answer in zip(batch, answers):
                job.future.set_result((answer, started - job.queued_at))

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
