"""Documents to tag: plain text lines, JSONL ``{"id", "text"}`` lines, or the sentences of a
CoNLL-U or column file (already tokenized)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tagger.config import CorpusFormat
from tagger.corpus import CorpusError, Sentence, decode_lines, read_lines

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
        from tagger.readers import read_sentences

        for number, sentence in enumerate(read_sentences(path, CorpusFormat(format=input_format), labelled=False), 1):
            yield sentence.sent_id or number, None, sentence
        return
    if path is None:
        lines = decode_lines(sys.stdin.buffer, "<stdin>")
    else:
        lines = read_lines(path)
    yield from parse_documents((line for _, line in lines), str(path) if path else "<stdin>", input_format)


Item = tuple[Any, str | None, Sentence | None]  # (id, text, sentence), see read_documents


DOCUMENT_TOKENS = 5_000  # the most tokens of a corpus document tagged as one (``tagger tag``, tag-file)


def group_documents(items: Iterable[Item], together: bool = True, max_tokens: int = DOCUMENT_TOKENS
                    ) -> Iterator[list[Item]]:
    """Group :func:`read_documents` items into what is tagged as one document: a raw text
    alone; a tokenized sentence with the rest of its document (up to the next ``newdoc``
    mark) when ``together``, else alone. Sentences before a corpus's first mark stand alone,
    as in :func:`tagger.corpus.document_ids`. A document of more than ``max_tokens`` tokens
    is cut into parts of at most that many (a longer sentence is a part of its own)."""
    run: list[Item] = []
    tokens, marked = 0, False
    for item in items:
        sentence = item[2]
        size = len(sentence.tokens) if sentence is not None else 0
        marked = marked or bool(sentence is not None and sentence.newdoc)
        if run and (sentence is None or not together or not marked or sentence.newdoc or tokens + size > max_tokens):
            yield run
            run, tokens = [], 0
        run.append(item)
        tokens += size
    if run:
        yield run


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
