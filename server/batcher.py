"""Micro-batching: concurrent requests for one model are collected (up to a token budget or
a few milliseconds) and tagged in one call on a worker thread, so many small requests run
at close to batch throughput. Up to ``workers`` batches are tagged at once, each on its own
thread (torch releases the GIL in its kernels, so two batches use two cores where one
batch on one torch thread could not). Work whose caller has gone (cancelled, deadline
passed) is dropped before it is computed; a full queue refuses new work instead of growing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tagger import TaggedText, Tagger, TokenizedText

Input = str | TokenizedText | Sequence[Sequence[str]]


class QueueFull(Exception):
    """The batcher holds ``max_queue`` documents already."""


@dataclass
class _Job:
    document: Input
    scores: bool
    size: int
    future: asyncio.Future
    deadline: float | None
    convert: Callable[[TaggedText], Any] | None = None


def estimate_tokens(document: Input) -> int:
    if isinstance(document, str):
        return max(1, len(document) // 5)  # about 5 characters a token in English
    if isinstance(document, TokenizedText):
        return max(1, sum(len(s) for s in document.sentences))
    return max(1, sum(len(s) for s in document))


class MicroBatcher:
    """One per model. ``submit`` awaits the tagged document.

    Args:
        tagger: the model.
        batch_tokens: token budget of a batch (estimated for raw text).
        wait_ms: how long the first job of a batch waits for company.
        max_queue: documents queued at most; beyond it ``submit`` raises QueueFull.
        on_batch: called with (documents, tokens) after each batch (metrics).
        workers: batches tagged at once, each on a thread of its own; a new batch is formed
            when one is free, from what queued up meanwhile.
    """

    def __init__(self, tagger: Tagger, batch_tokens: int = 4096, wait_ms: float = 0.0, max_queue: int = 1024,
                 on_batch: Callable[[int, int], None] | None = None, workers: int = 1):
        if workers < 1:
            raise ValueError("a batcher needs at least one worker")
        self.tagger = tagger
        self.batch_tokens, self.wait = batch_tokens, wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.workers = workers
        self._queue: asyncio.Queue[_Job] | None = None
        self._pending = 0  # submitted and not yet answered: queued, batching or being tagged
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagger")
        self._worker: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()  # being tagged

    @property
    def depth(self) -> int:
        """Documents submitted and not yet answered."""
        return self._pending

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def tokenize(self, text: str) -> TokenizedText:
        """Tokenize on one of this model's worker threads (off the event loop)."""
        loop = asyncio.get_running_loop()
        return (await loop.run_in_executor(self._executor, self.tagger.tokenize, [text]))[0]

    async def drain(self, poll: float = 0.01) -> None:
        """Wait until every submitted document has been answered."""
        while self._pending:
            await asyncio.sleep(poll)

    async def close(self) -> None:
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._batches:  # their callers get their answers
            await asyncio.gather(*self._batches, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, document: Input, scores: bool, deadline: float | None = None,
                     convert: Callable[[TaggedText], Any] | None = None) -> Any:
        """Queue a document and wait for its result (:meth:`Tagger.predict_documents`'s, which
        :meth:`Tagger.document` makes a Document of), or ``convert`` of it, called on the worker
        thread (off the event loop). ``deadline`` is a ``time.monotonic()`` value."""
        if self._queue is None:
            raise RuntimeError("batcher not started")
        if self._pending >= self.max_queue:
            raise QueueFull(f"{self.max_queue} documents are waiting")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(document, scores, estimate_tokens(document), future, deadline, convert))
        self._pending += 1
        try:
            return await future
        finally:
            self._pending -= 1
            future.cancel()  # no-op when done; marks abandoned work so the worker skips it

    async def _run(self) -> None:
        assert self._queue is not None
        free = asyncio.Semaphore(self.workers)
        while True:
            await free.acquire()  # a batch is formed when a worker can take it
            try:
                live = await self._next_batch()
            except BaseException:
                free.release()
                raise
            batch = asyncio.create_task(self._tag(live))
            self._batches.add(batch)
            batch.add_done_callback(lambda done: (self._batches.discard(done), free.release()))

    async def _next_batch(self) -> list[_Job]:
        """The jobs of the next batch, once there is one: those still wanted, up to the budget."""
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            budget_end = time.monotonic() + self.wait
            size = jobs[0].size
            while size < self.batch_tokens:
                remaining = budget_end - time.monotonic()
                try:
                    job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                jobs.append(job)
                size += job.size
            now = time.monotonic()
            live = []
            for job in jobs:
                if job.future.done():
                    continue  # the caller went away
                if job.deadline is not None and now >= job.deadline:
                    job.future.set_exception(TimeoutError("deadline passed before tagging"))
                    continue
                live.append(job)
            if live:
                return live

    async def _tag(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results, tokens = await loop.run_in_executor(self._executor, self._compute, jobs)
        except Exception as error:
            if len(jobs) > 1:  # find the one that fails; the others still get their answers
                for job in jobs:
                    await self._tag([job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(error)
            return
        for job, result in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(result)
        if self.on_batch:
            self.on_batch(len(jobs), tokens)

    def _compute(self, jobs: list[_Job]) -> tuple[list[Any], int]:
        """On a worker thread: tag the batch, convert each result its caller's way; and count
        the tokens."""
        documents = self.tagger.predict_documents([job.document for job in jobs], any(job.scores for job in jobs))
        tokens = sum(len(s) for d in documents for s in d.sentences)
        return [job.convert(d) if job.convert else d for job, d in zip(jobs, documents)], tokens
