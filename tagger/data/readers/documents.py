"""Documents to tag: plain text lines, JSONL ``{"id", "text"}`` lines, or the sentences of a
CoNLL-U or column file (already tokenized)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tagger.config import CorpusFormat
from tagger.data.corpus import CorpusError, Sentence, decode_lines, read_lines

INPUT_FORMATS = ("auto", "text", "jsonl", "conllu", "columns")


def read_documents(path: str | Path | None, input_format: str = "auto") -> Iterator[tuple[Any, str | None, Sentence | None]]:
    """Yield ``(id, text, sentence)``: raw documents have ``text``, tokenized ones a Sentence.

    Text lines are numbered from 1 (their id); JSONL lines keep their ``id`` (default: the
    line number). ``auto`` reads JSONL when the first non-blank line starts with ``{``.
    ``path`` None reads standard input.
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input format must be one of {', '.join(INPUT_FORMATS)}")
    if input_format in ("conllu", "columns"):
        if path is None:
            raise CorpusError("<stdin>", 0, f"input format {input_format} needs a file")
        from tagger.data.readers import read_sentences

        for number, sentence in enumerate(read_sentences(path, CorpusFormat(format=input_format), labelled=False), 1):
            yield sentence.sent_id or number, None, sentence
        return
    if path is None:
        lines = decode_lines(sys.stdin.buffer, "<stdin>")
    else:
        lines = read_lines(path)
    yield from parse_documents((line for _, line in lines), str(path) if path else "<stdin>", input_format)


Item = tuple[Any, str | None, Sentence | None]  # (id, text, sentence), see read_documents
T = TypeVar("T")


DOCUMENT_TOKENS = 5_000  # the most tokens of a corpus document tagged as one (``tagger tag``, tag-file)


def group_documents(items: Iterable[Item], together: bool = True, max_tokens: int = DOCUMENT_TOKENS
                    ) -> Iterator[list[Item]]:
    """Group :func:`read_documents` items into what is tagged as one document: a raw text
    alone; a tokenized sentence with the rest of its document (up to the next ``newdoc``
    mark) when ``together``, else alone. Sentences before a corpus's first mark stand alone,
    as in :func:`tagger.data.corpus.document_ids`. A document of more than ``max_tokens`` tokens
    is cut into parts of at most that many (a longer sentence is a part of its own)."""
    marked = False

    def starts_document(item: Item, _: int) -> bool:
        nonlocal marked
        sentence = item[2]
        marked = marked or bool(sentence is not None and sentence.newdoc)
        return sentence is None or not together or not marked or sentence.newdoc

    return bounded_groups(items, lambda item: len(item[2].tokens) if item[2] is not None else 0, max_tokens,
                          starts_document)


def bounded_groups(items: Iterable[T], cost: Callable[[T], int], budget: int,
                   starts_group: Callable[[T, int], bool]) -> Iterator[list[T]]:
    """Consecutive groups of ``items``: a new group starts where ``starts_group(item, size of
    the current group)`` says so, or where ``item`` would take the group's ``cost`` past
    ``budget`` (an item over the budget is a group of its own)."""
    group: list[T] = []
    total = 0
    for item in items:
        count = cost(item)
        if group and (starts_group(item, len(group)) or total + count > budget):
            yield group
            group, total = [], 0
        group.append(item)
        total += count
    if group:
        yield group


def parse_documents(lines: Iterable[str], name: str, input_format: str = "auto"
                    ) -> Iterator[tuple[Any, str, None]]:
    """The raw documents of text or JSONL ``lines`` (``name`` for errors), as :func:`read_documents`."""
    mode = input_format
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if mode == "auto" and line.strip():
            mode = "jsonl" if line.lstrip().startswith("{") else "text"
        if mode != "jsonl":
            yield number, line, None
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["text"]
            if not isinstance(text, str):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CorpusError(name, number, "expected a JSON object with a string 'text'") from None
        yield record.get("id", number), text, None
