"""Tagging a file into a file (``tagger tag``), at the speed of the model or faster.

The job reads chunks of documents, tokenizes and tags each chunk in one call, and writes the
chunks in input order. Chunks are large because :func:`tagger.inference.predict.predict`
batches sentences of similar length within a chunk: the larger the chunk, the less padding.
A chunk holds at most ``chunk_documents`` documents and about ``CHUNK_TOKENS`` tokens, so
memory stays flat on any input size. Raw texts to JSONL (the common job) are written straight
from the predictions (:func:`tagger.inference.output.jsonl_line`), without per-token objects.

**Worker processes.** Half of tagging is Python (tokenizing, batching, Viterbi's way back,
writing) that runs on one core while torch's threads wait; with ``workers`` > 1 (Linux) the
chunks go to that many processes forked from this one, each on one torch thread, and this
process only reads, hands out and writes, in order, with at most two chunks a worker in
flight. Forked, a worker shares the loaded weights (copy on write) and starts at once; it
makes its own ONNX Runtime sessions. An input of one chunk is tagged here. An error in a
worker, Ctrl-C or a failed write stops every worker at once and raises here. Measured on 2
cores (EWT texts, en-pos and en-core, 2026-12-04): 1.1-1.35x the in-process ``tag_texts``
call on two torch threads.

Tried and measured slower: a reader thread (parse, tokenize) and a writer thread around
the tagging one. On two cores, torch's two threads run the LSTM; the Python threads then
fight them for cores and the GIL, and the job ran at 70-85% of the one-thread speed.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from io import StringIO
from typing import IO

from tagger.data.readers.documents import Item, bounded_groups, group_documents
from tagger.inference.output import jsonl_line, split_sentences, write_document
from tagger.inference.predict import Tagger, collector_paused

CHUNK_DOCUMENTS = 4096  # documents tagged in one call (``tagger tag --batch``)
CHUNK_TOKENS = 100_000  # and at most about this many tokens (raw text: 5 characters a token)
WORKER_CHUNK_DOCUMENTS = 1024  # with workers: smaller chunks, so that they share the end of a file evenly
MAX_WORKERS = 8  # the default's cap (each worker holds a chunk and its own activations)
FORKS = sys.platform == "linux"  # where forking a process that has loaded torch is safe (and cheap)


def default_workers() -> int:
    """The file job's worker processes by default: one per core this process may use (at
    most ``MAX_WORKERS``) on Linux; elsewhere 1 (tagging in this process)."""
    if not FORKS:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@dataclass(frozen=True)
class _Job:
    """What every chunk of one file job is tagged with."""

    tagger: Tagger
    output_format: str
    scores: bool

    def render(self, chunk: list[list[Item]]) -> tuple[int, str]:
        """A chunk's documents, tagged and written out: (documents, text)."""
        tagger, scores, output_format = self.tagger, self.scores, self.output_format
        tasks = list(tagger.tasks)
        flat = [item for run in chunk for item in run]
        with collector_paused():  # a chunk at a time (no reference cycles are made; see collector_paused)
            if flat[0][1] is None:  # a corpus's sentences, tagged with their document (a chunk is all one kind)
                merged = tagger.tag_documents([[s.tokens for _, _, s in run] for run in chunk], scores)  # type: ignore[union-attr]
                documents = [sentence for document in merged for sentence in split_sentences(document)]
            elif output_format == "jsonl":  # the common case, written straight from the predictions
                spans = {task for task, kind in tagger.tasks.items() if kind == "span"}
                tagged = tagger.predict_documents([text for _, text, _ in flat], scores)  # type: ignore[misc]
                return len(flat), "".join(jsonl_line(doc_id, t, tasks, spans) for (doc_id, _, _), t in zip(flat, tagged, strict=True))
            else:
                documents = tagger.tag_texts([t for _, t, _ in flat], scores)  # type: ignore[misc]
            handle = StringIO()
            for (doc_id, _, source), document in zip(flat, documents, strict=True):
                write_document(handle, output_format, doc_id, document, tasks, source)
            return len(flat), handle.getvalue()


def tag_file(tagger: Tagger, items: Iterable[Item], handle: IO[str], output_format: str = "jsonl",
             scores: bool = True, chunk_documents: int = CHUNK_DOCUMENTS,
             progress: Callable[[int], None] | None = None, workers: int = 1) -> int:
    """Tag :func:`tagger.data.readers.documents.read_documents` items into ``handle``, in input order.

    A raw text is one document; a tokenized corpus's sentences are tagged with the rest of
    their document when the model reads document context (each written with the offsets it
    has alone). ``progress`` is called with the number of documents of each chunk done.
    ``workers`` > 1: tag in that many forked processes (module docstring; 1 where processes
    are not forked), in chunks of at most ``WORKER_CHUNK_DOCUMENTS`` documents: the same
    labels and, without scores, the same bytes (a worker's one torch thread sums in another
    order than two, so a score may differ in its last float32 digits, as between machines).

    Returns:
        The number of documents written.
    """
    if chunk_documents < 1:
        raise ValueError("documents per chunk must be at least 1")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    workers, budget = workers if FORKS else 1, CHUNK_TOKENS
    if workers > 1:
        chunk_documents = min(chunk_documents, WORKER_CHUNK_DOCUMENTS)
        budget = CHUNK_TOKENS * WORKER_CHUNK_DOCUMENTS // CHUNK_DOCUMENTS
    runs = group_documents(items, together=tagger.context_weight > 0)
    chunks = bounded_groups(runs, _cost, budget, lambda _, size: size >= chunk_documents)
    job = _Job(tagger, output_format, scores)
    written = 0
    with contextlib.closing(_rendered(job, chunks, workers)) as rendered:  # an error here stops the workers too
        for count, text in rendered:
            handle.write(text)
            written += count
            if progress is not None:
                progress(count)
    return written


def _rendered(job: _Job, chunks: Iterator[list[list[Item]]], workers: int) -> Iterator[tuple[int, str]]:
    """Each chunk rendered, in order: here, or (two chunks or more) on up to ``workers``
    processes (no more than the chunks read ahead)."""
    head = list(itertools.islice(chunks, workers))
    chunks = itertools.chain(head, chunks)
    if workers < 2 or len(head) < 2:
        yield from map(job.render, chunks)
        return
    pool = ProcessPoolExecutor(len(head), multiprocessing.get_context("fork"), initializer=_start_worker,
                               initargs=(job,))
    try:
        pending: deque[Future[tuple[int, str]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_render_in_worker, chunk))
            if len(pending) >= 2 * len(head):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool as error:
        raise RuntimeError("a worker process died (out of memory?); --workers 1 tags in one process") from error
    except BaseException:  # an error, Ctrl-C or the caller stopping: the workers stop now, mid-chunk
        for process in list((pool._processes or {}).values()):  # the executor has no public way to do this
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_WORKER_JOB: _Job | None = None  # in a worker process: the job it was forked for


def _start_worker(job: _Job) -> None:
    global _WORKER_JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    gc.freeze()  # the collector leaves what was forked alone, so its pages stay shared with the parent
    job.tagger.for_forked_process(threads=1)
    _WORKER_JOB = job


def _render_in_worker(chunk: list[list[Item]]) -> tuple[int, str]:
    assert _WORKER_JOB is not None, "called outside a worker process"
    return _WORKER_JOB.render(chunk)


def _cost(run: list[Item]) -> int:
    """A run's tokens; a raw text's estimated from its length."""
    return sum(len(s.tokens) if s is not None else len(text or "") // 5 for _, text, s in run)
