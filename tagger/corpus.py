"""The one internal form every corpus format becomes: a list of :class:`Sentence` records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    """

    tokens: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    line: int = 0
    sent_id: str | None = None
    text: str | None = None
    rows: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    comments: tuple[str, ...] = field(default=(), repr=False)
    token_lines: tuple[int, ...] = field(default=(), repr=False)

    def with_labels(self, labels: tuple[str, ...] | list[str] | None) -> "Sentence":
        return dataclasses.replace(self, labels=None if labels is None else tuple(labels))


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
