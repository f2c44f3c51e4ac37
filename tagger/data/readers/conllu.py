"""CoNLL-U reader (Universal Dependencies).

::

    # sent_id = weblog-...-0001
    # text = From the AP comes this story :
    1	From	from	ADP	IN	_	3	case	3:case	_
    2-3	don't	_	_	_	_	_	_	_	_
    8.1	reported	report	VERB	VBN	_	_	_	5:conj	_

Multi-word token lines (``2-3``) and empty nodes (``8.1``) are skipped: the tagger labels
syntactic words. The label is UPOS (column 4) or XPOS (column 5).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tagger.data.corpus import CorpusError, Sentence, is_newdoc, read_lines

LABEL_COLUMNS = {"upos": 3, "xpos": 4}


def read_conllu(path: str | Path, label: Literal["upos", "xpos"] | None = "upos") -> Iterator[Sentence]:
    """Yield the sentences of a CoNLL-U file, labelled with UPOS or XPOS (None: unlabelled)."""
    label_index = LABEL_COLUMNS[label] if label else None
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    comments: list[str] = []
    start = 0
    for number, line in read_lines(path):
        if not line.strip():
            if rows:
                yield _sentence(rows, lines, comments, start, label_index)
            elif comments:
                raise CorpusError(path, number, "comment lines with no token lines after them")
            rows, lines, comments = [], [], []
            continue
        if not rows and not comments:
            start = number
        if line.startswith("#"):
            if rows:
                raise CorpusError(path, number, "comment line inside a sentence")
            comments.append(line[1:].strip())
            continue
        columns = tuple(line.split("\t"))
        if len(columns) != 10:
            raise CorpusError(path, number, f"expected 10 tab-separated columns, found {len(columns)}")
        word_id = columns[0]
        if "-" in word_id or "." in word_id:
            continue  # multi-word token range or empty node
        if not word_id.isdigit():
            raise CorpusError(path, number, f"word id {word_id!r} is not an integer")
        if int(word_id) != len(rows) + 1:
            raise CorpusError(path, number, f"word id {word_id} out of sequence (expected {len(rows) + 1})")
        if not columns[1].strip():
            raise CorpusError(path, number, "empty token (FORM column)")
        if label_index is not None and (not columns[label_index] or columns[label_index] == "_"):
            raise CorpusError(path, number, f"missing {label.upper()} label")  # type: ignore[union-attr]
        rows.append(columns)
        lines.append(number)
    if rows:
        yield _sentence(rows, lines, comments, start, label_index)


def _sentence(
    rows: list[tuple[str, ...]], lines: list[int], comments: list[str], start: int, label_index: int | None
) -> Sentence:
    meta = dict(_key_value(c) for c in comments)
    labels = tuple(r[label_index] for r in rows) if label_index is not None else None
    return Sentence(
        tokens=tuple(r[1] for r in rows),
        labels=labels,
        line=start,
        sent_id=meta.get("sent_id"),
        text=meta.get("text"),
        rows=tuple(rows),
        comments=tuple(comments),
        token_lines=tuple(lines),
        newdoc=is_newdoc(comments),
    )


def _key_value(comment: str) -> tuple[str, str]:
    key, _, value = comment.partition("=")
    return key.strip(), value.strip()
