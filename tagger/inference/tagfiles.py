"""Tagging a file into a file (``tagger tag``), at the speed of the model.

The job reads a chunk of documents, tokenizes it, tags it in one call and writes it, in
that order, on one thread. Chunks are large because :func:`tagger.inference.predict.predict` batches
sentences of similar length within a chunk: the larger the chunk, the less padding. A chunk
holds at most ``chunk_documents`` documents and about ``CHUNK_TOKENS`` tokens, so memory
stays flat on any input size. Raw texts to JSONL (the common job) are written straight
from the predictions (:func:`tagger.inference.output.jsonl_line`), without per-token objects.

Tried and measured slower: a reader thread (parse, tokenize) and a writer thread around
the tagging one. On two cores, torch's two threads run the LSTM; the Python threads then
fight them for cores and the GIL, and the job ran at 70-85% of the one-thread speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO

from tagger.data.readers.documents import Item, bounded_groups, group_documents
from tagger.inference.output import jsonl_line, split_sentences, write_document
from tagger.inference.predict import Tagger, collector_paused

CHUNK_DOCUMENTS = 4096  # documents tagged in one call (``tagger tag --batch``)
CHUNK_TOKENS = 100_000  # and at most about this many tokens (raw text: 5 characters a token)


def tag_file(tagger: Tagger, items: Iterable[Item], handle: IO[str], output_format: str = "jsonl",
             scores: bool = True, chunk_documents: int = CHUNK_DOCUMENTS,
             progress: Callable[[int], None] | None = None) -> int:
    """Tag :func:`tagger.data.readers.documents.read_documents` items into ``handle``, in input order.

    A raw text is one document; a tokenized corpus's sentences are tagged with the rest of
    their document when the model reads document context (each written with the offsets it
    has alone). ``progress`` is called with the number of documents of each chunk done.

    Returns:
        The number of documents written.
    """
    if chunk_documents < 1:
        raise ValueError("documents per chunk must be at least 1")
    tasks = list(tagger.tasks)
    runs = group_documents(items, together=tagger.context_weight > 0)
    chunks = bounded_groups(runs, _cost, CHUNK_TOKENS, lambda _, size: size >= chunk_documents)

    spans = {task for task, kind in tagger.tasks.items() if kind == "span"}
    written = 0
    for chunk in chunks:
        flat = [item for run in chunk for item in run]
        with collector_paused():  # a chunk at a time (no reference cycles are made; see collector_paused)
            if flat[0][1] is None:  # a corpus's sentences, tagged with their document (a chunk is all one kind)
                merged = tagger.tag_documents([[s.tokens for _, _, s in run] for run in chunk], scores)  # type: ignore[union-attr]
                documents = [sentence for document in merged for sentence in split_sentences(document)]
                for (doc_id, _, source), document in zip(flat, documents, strict=True):
                    write_document(handle, output_format, doc_id, document, tasks, source)
            elif output_format == "jsonl":  # the common case, written straight from the predictions
                tagged = tagger.predict_documents([text for _, text, _ in flat], scores)  # type: ignore[misc]
                handle.write("".join(jsonl_line(doc_id, t, tasks, spans) for (doc_id, _, _), t in zip(flat, tagged, strict=True)))
            else:
                for (doc_id, _, source), document in zip(flat, tagger.tag_texts([t for _, t, _ in flat], scores), strict=True):  # type: ignore[misc]
                    write_document(handle, output_format, doc_id, document, tasks, source)
        written += len(flat)
        if progress is not None:
            progress(len(flat))
    return written


def _cost(run: list[Item]) -> int:
    """A run's tokens; a raw text's estimated from its length."""
    return sum(len(s.tokens) if s is not None else len(text or "") // 5 for _, text, s in run)
