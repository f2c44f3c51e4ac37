"""Micro-batching: concurrent documents share batches, results stay with their callers."""

from __future__ import annotations

import asyncio
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
