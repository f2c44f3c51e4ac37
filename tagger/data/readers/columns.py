"""Column-file reader: one token per line, blank lines between sentences.

Covers CoNLL-2003 (space-separated, ``-DOCSTART-`` lines, IOB1)::

    -DOCSTART- -X- -X- O

    EU NNP B-NP I-ORG
    rejects VBZ B-VP O

token/label pairs such as WNUT-17 (tab-separated)::

    Pretty	O
    Chicago	B-location

and Universal NER (5 tab-separated columns, ``#`` comments)::

    # sent_id = answers-20070404104007AAY1Chs_ans-0001
    7	tampa	B-LOC	-	stephen

The token and label columns (1-based) are given or detected by :func:`detect_layout`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tagger.data.corpus import CorpusError, Sentence, is_newdoc, read_lines
from tagger.data.schemes import is_span_label

DOCSTART = "-DOCSTART-"
_COMMENT = re.compile(r"^#\s+[\w.-]+\s*=")  # "# sent_id = ..."; a token "#x=1" has no space after "#"
SAMPLE_LINES = 20_000


@dataclass(frozen=True)
class ColumnLayout:
    """How a column file is laid out. Columns are 1-based; ``delimiter`` None means whitespace."""

    columns: int
    token_column: int
    label_column: int | None
    delimiter: str | None = "\t"


def _split(line: str, delimiter: str | None) -> list[str]:
    return [f.strip() for f in line.split(delimiter)] if delimiter else line.split()


def _is_comment(line: str, fields: int, layout_columns: int | None) -> bool:
    return line.startswith("#") and (fields != layout_columns or _COMMENT.match(line) is not None)


def detect_layout(path: str | Path, token_column: int | None = None, label_column: int | None = None) -> ColumnLayout:
    """Sniff the delimiter, column count, token column and label column from the file's start.

    The token column is 2 when column 1 holds running integers (Universal NER), else 1. The
    label column is the last column whose values all look like span labels (``O``, ``B-X``);
    failing that, the last column. Given columns are kept and checked against the layout.
    """
    sample = [line for _, line in islice(read_lines(path), SAMPLE_LINES) if line.strip()]
    data = [line for line in sample if not line.startswith("#") and not line.startswith(DOCSTART)]
    if not data:
        raise CorpusError(path, 1, "no token lines found")
    delimiter: str | None = "\t" if any("\t" in line for line in data) else None
    counts = Counter(len(_split(line, delimiter)) for line in data)
    columns = counts.most_common(1)[0][0]
    rows = [_split(line, delimiter) for line in data]
    rows = [r for r in rows if len(r) == columns]
    if token_column is None:
        token_column = 2 if columns >= 3 and all(r[0].isdigit() for r in rows) else 1
    if label_column is None and columns > 1:
        candidates = [c for c in range(columns) if c + 1 != token_column
                      and all(is_span_label(r[c]) for r in rows) and any(r[c] != "O" for r in rows)]
        label_column = (candidates[-1] + 1) if candidates else columns
    for name, value in (("token", token_column), ("label", label_column)):
        if value is not None and not 1 <= value <= columns:
            raise CorpusError(path, 1, f"{name} column {value} is outside the file's {columns} columns")
    return ColumnLayout(columns, token_column, label_column, delimiter)


def read_columns(path: str | Path, layout: ColumnLayout | None = None, unlabelled: bool = False) -> Iterator[Sentence]:
    """Yield the sentences of a column file (labels None when ``unlabelled``)."""
    layout = layout or detect_layout(path)
    label_index = None if unlabelled or layout.label_column is None else layout.label_column - 1
    tokens: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    comments: list[str] = []
    start = 0
    docstart = False  # a -DOCSTART- line came after the last sentence
    for number, line in read_lines(path):
        if not line.strip() or line.startswith(DOCSTART):
            if tokens:
                yield _sentence(tokens, labels, lines, comments, label_index, start, docstart)
                docstart = False
            docstart = docstart or line.startswith(DOCSTART)
            tokens, labels, lines, comments = [], [], [], []
            continue
        if not tokens and not comments:
            start = number
        fields = _split(line, layout.delimiter)
        if _is_comment(line, len(fields), layout.columns):
            if tokens:
                raise CorpusError(path, number, "comment line inside a sentence")
            comments.append(line[1:].strip())
            continue
        if len(fields) != layout.columns:
            raise CorpusError(path, number, f"expected {layout.columns} columns, found {len(fields)}")
        token = fields[layout.token_column - 1]
        if not token:
            raise CorpusError(path, number, "empty token")
        if label_index is not None:
            if not fields[label_index]:
                raise CorpusError(path, number, "empty label")
            labels.append(fields[label_index])
        tokens.append(token)
        lines.append(number)
    if tokens:
        yield _sentence(tokens, labels, lines, comments, label_index, start, docstart)


def _sentence(tokens: list[str], labels: list[str], lines: list[int], comments: list[str],
              label_index: int | None, start: int, docstart: bool) -> Sentence:
    meta = dict((k.strip(), v.strip()) for k, _, v in (c.partition("=") for c in comments) if _)
    return Sentence(
        tokens=tuple(tokens),
        labels=tuple(labels) if label_index is not None else None,
        line=start,
        sent_id=meta.get("sent_id"),
        text=meta.get("text"),
        comments=tuple(comments),
        token_lines=tuple(lines),
        newdoc=docstart or is_newdoc(comments),
    )
