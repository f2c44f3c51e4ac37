"""Micro-batching: concurrent documents share batches, results stay with their callers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from server.batcher import MicroBatcher, QueueFull
from tagger import Tagger


@pytest.fixture(scope="module")
def tagger(tiny_pos_model):
    return Tagger.load(tiny_pos_model)


def test_concurrent_documents_are_batched_and_answered_in_kind(tagger):
    texts = [f"Sentence number {i} is about Paris ." for i in range(40)]
    batches = []

    async def main():
        batcher = MicroBatcher(tagger, batch_tokens=4096, wait_ms=0, on_batch=lambda d, t: batches.append(d))
        batcher.start()
        try:
            mixed = [t if i % 2 else [t.split()] for i, t in enumerate(texts)]
            return await asyncio.gather(*(batcher.submit(doc, scores=i % 3 == 0) for i, doc in enumerate(mixed)))
        finally:
            await batcher.close()

    documents = [tagger.document(tagged) for tagged in asyncio.run(main())]
    assert sum(batches) == 40 and len(batches) < 40 and max(batches) > 1
    for i, (text, document) in enumerate(zip(texts, documents)):
        alone = tagger.tag(text) if i % 2 else tagger.tag_tokens([text.split()])
        assert [t.labels["upos"].value for s in document.sentences for t in s.tokens] == \
            [t.labels["upos"].value for s in alone.sentences for t in s.tokens]


def test_expired_and_full(tagger):
    async def main():
        batcher = MicroBatcher(tagger, wait_ms=200, max_queue=2)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit("On time .", False))
            late = asyncio.ensure_future(batcher.submit("Too late .", False, deadline=time.monotonic() + 0.05))
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFull):
                await batcher.submit("No room .", False)
            assert (await first).sentences == [[("On", 0, 2), ("time", 3, 7), (".", 8, 9)]]
            with pytest.raises(TimeoutError):
                await late
            assert batcher.depth == 0
        finally:
            await batcher.close()

    asyncio.run(main())


class _Meeting:
    """A tagger whose first two calls must be inside predict_documents at the same time (each
    waits for the other); it counts the calls in at once."""

    def __init__(self, tagger):
        self.tagger, self.inside, self.most, self.calls = tagger, 0, 0, 0
        self.lock, self.barrier = threading.Lock(), threading.Barrier(2, timeout=3)

    def predict_documents(self, documents, scores):
        with self.lock:
            self.calls += 1
            self.inside += 1
            self.most = max(self.most, self.inside)
            first_two = self.calls <= 2
        try:
            if first_two:
                self.barrier.wait()
            return self.tagger.predict_documents(documents, scores)
        finally:
            with self.lock:
                self.inside -= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_up_to_workers_batches_are_tagged_at_once(tagger, workers):
    meeting = _Meeting(tagger)
    texts = ["Paris is big .", "Rome is old .", "Oslo is cold ."]

    async def main():
        batcher = MicroBatcher(meeting, batch_tokens=1, workers=workers)  # one document a batch
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(t, False) for t in texts), return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    if workers == 2:  # the first two batches met inside the tagger; every caller has its own answer
        assert meeting.most == 2
        assert [r.sentences for r in results] == [tagger.predict_documents([t], False)[0].sentences for t in texts]
    else:  # one at a time: the first call waited alone for a second that never came
        assert meeting.most == 1
        assert isinstance(results[0], threading.BrokenBarrierError)


def test_a_batcher_needs_a_worker(tagger):
    with pytest.raises(ValueError, match="at least one worker"):
        MicroBatcher(tagger, workers=0)


def test_a_result_is_converted_on_the_worker_thread(tagger):
    """The service builds its response message off the event loop, right after tagging."""
    async def main():
        batcher = MicroBatcher(tagger, workers=2)
        batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit("Paris is big .", False, convert=lambda d: (threading.current_thread().name, d)),
                batcher.submit("Rome is old .", False))
        finally:
            await batcher.close()

    (thread, converted), plain = asyncio.run(main())
    assert thread.startswith("tagger") and thread != threading.main_thread().name
    assert [t for s in converted.sentences for t, _, _ in s] == ["Paris", "is", "big", "."]
    assert [t for s in plain.sentences for t, _, _ in s] == ["Rome", "is", "old", "."]
