"""The one internal form every corpus format becomes: a list of :class:`Sentence` records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sentence:
    """One sentence of a corpus.

    Attributes:
        tokens: the token strings.
        labels: one label per token, or None for unlabelled text.
        line: 1-based line in the source file where the sentence starts (0 if none).
        sent_id: the ``# sent_id`` of CoNLL-U or Universal NER, if any.
        text: the ``# text`` comment, if any.
        rows: the source's columns per token (CoNLL-U writers fill labels into these).
        comments: the comment lines before the sentence, without the leading ``#``.
        token_lines: the source line of each token, for error messages.
        newdoc: the sentence starts a document (``# newdoc`` in CoNLL-U and Universal NER,
            the first sentence after a ``-DOCSTART-`` line in CoNLL-2003).
    """

    tokens: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    line: int = 0
    sent_id: str | None = None
    text: str | None = None
    rows: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    comments: tuple[str, ...] = field(default=(), repr=False)
    token_lines: tuple[int, ...] = field(default=(), repr=False)
    newdoc: bool = field(default=False, repr=False)

    def with_labels(self, labels: tuple[str, ...] | list[str] | None) -> "Sentence":
        return dataclasses.replace(self, labels=None if labels is None else tuple(labels))


def document_ids(sentences: Sequence[Sentence]) -> list[int] | None:
    """The document index of each sentence, from the ``newdoc`` marks: a mark starts a
    document that runs to the next mark. None for a corpus that marks no documents, and
    sentences before the first mark get one each (their context is unknown, so each
    stands alone; :func:`tagger.data.readers.documents.group_documents` streams the same way)."""
    if not any(s.newdoc for s in sentences):
        return None
    ids, current, marked = [], -1, False
    for sentence in sentences:
        marked = marked or sentence.newdoc
        current += sentence.newdoc or not marked
        ids.append(current)
    return ids


def is_newdoc(comments: Iterable[str]) -> bool:
    """A comment block that opens a document: ``# newdoc`` or ``# newdoc id = ...``."""
    return any(c == "newdoc" or c.startswith(("newdoc ", "newdoc=")) for c in comments)


class CorpusError(ValueError):
    """A malformed corpus: names the file, the line and what is wrong."""

    def __init__(self, path: str | Path, line: int, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}")


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the line ending; strict UTF-8 (a BOM is dropped).

    Raises:
        CorpusError: a line that is not valid UTF-8, or a file that cannot be opened.
    """
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise CorpusError(path, 0, f"cannot open: {error.strerror or error}") from None
    with handle:
        yield from decode_lines(handle, path)


def decode_lines(raw_lines: Iterable[bytes], path: str | Path) -> Iterator[tuple[int, str]]:
    """:func:`read_lines` over lines of bytes already open (standard input, a file's bytes)."""
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorpusError(path, number, f"invalid UTF-8 at byte {error.start} of the line") from None
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        yield number, line.rstrip("\r\n")
