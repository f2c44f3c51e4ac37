"""Readers: one module per format, and :func:`load_corpus`, the edge where every format
becomes the internal form (sentences whose span labels are IOB2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal

from tagger.config import CorpusFormat
from tagger.data.corpus import CorpusError, Sentence, read_lines
from tagger.data.readers.columns import ColumnLayout, detect_layout, read_columns
from tagger.data.readers.conllu import read_conllu
from tagger.data.schemes import Scheme, SchemeError, check_labels, convert, detect_scheme, is_span_label, normalise_scheme

__all__ = ["Corpus", "ColumnLayout", "detect_format", "detect_layout", "load_corpus", "read_columns",
           "read_conllu", "read_sentences", "READERS"]

Kind = Literal["tag", "span"]


@dataclass(frozen=True)
class Corpus:
    """A corpus in the internal form.

    Attributes:
        sentences: span labels converted to IOB2; tag labels as read.
        kind: ``span`` (entity spans, evaluated with seqeval) or ``tag`` (POS-like).
        scheme: the scheme the file was written in (span corpora only).
    """

    path: str
    sentences: list[Sentence]
    kind: Kind
    scheme: Scheme | None = None

    @property
    def labels(self) -> list[str]:
        return sorted({label for s in self.sentences for label in (s.labels or ())})


def detect_format(path: str | Path) -> Literal["conllu", "columns"]:
    """CoNLL-U when the file is named ``*.conllu`` or its first token line has 10 tab-separated
    columns starting with a word id; otherwise columns."""
    if str(path).endswith(".conllu"):
        return "conllu"
    for _, line in islice(read_lines(path), 2000):
        if line.strip() and not line.startswith("#"):
            fields = line.split("\t")
            return "conllu" if len(fields) == 10 and fields[0].split("-")[0].split(".")[0].isdigit() else "columns"
    return "columns"


READERS: dict[str, Callable[..., Iterator[Sentence]]] = {"conllu": read_conllu, "columns": read_columns}


def read_sentences(path: str | Path, fmt: CorpusFormat, labelled: bool = True) -> Iterator[Sentence]:
    """Yield raw sentences (labels as written) from any supported format."""
    kind = detect_format(path) if fmt.format == "auto" else fmt.format
    if kind == "conllu":
        label = fmt.label_column if fmt.label_column is not None else "upos"
        if not isinstance(label, str):
            label = {4: "upos", 5: "xpos"}.get(label)  # type: ignore[assignment]
            if label is None:
                raise CorpusError(path, 0, "CoNLL-U labels come from column 4 (upos) or 5 (xpos)")
        return read_conllu(path, label if labelled else None)  # type: ignore[arg-type]
    if isinstance(fmt.label_column, str):
        raise CorpusError(path, 0, f"label column {fmt.label_column!r} only applies to CoNLL-U files")
    layout = detect_layout(path, fmt.token_column, fmt.label_column)
    return read_columns(path, layout, unlabelled=not labelled)


def _span_labelled(sentences: list[Sentence]) -> bool:
    """Span labels: ``O`` occurs and some label is ``P-TYPE`` (no POS tag set has both)."""
    labels = {label for s in sentences for label in s.labels or ()}
    return "O" in labels and any(is_span_label(label) and label != "O" for label in labels)


def load_corpus(path: str | Path, fmt: CorpusFormat = CorpusFormat(), kind: Kind | None = None) -> Corpus:
    """Read a whole labelled corpus and convert span labels to IOB2.

    Args:
        kind: ``span`` or ``tag``; None detects it (span when ``O`` and ``P-TYPE``
            labels occur; any other label is then an error). Pass the model's kind when evaluating, so an all-``O`` file still
            counts as a span corpus.

    Raises:
        CorpusError: with file and line, for any malformed line or label; nothing is returned.
    """
    sentences = list(read_sentences(path, fmt))
    if not sentences:
        raise CorpusError(path, 0, "no sentences found")
    unlabelled = next((s for s in sentences if s.labels is None), None)
    if unlabelled is not None:
        raise CorpusError(path, unlabelled.line, "no label column: the file holds only tokens")
    if kind is None:
        kind = "span" if fmt.scheme != "auto" or _span_labelled(sentences) else "tag"
    if kind == "tag":
        return Corpus(str(path), sentences, "tag")
    try:
        scheme = detect_scheme(s.labels or () for s in sentences) if fmt.scheme == "auto" else normalise_scheme(fmt.scheme)
    except SchemeError:
        scheme = "iob2"  # check_labels below names the offending line
    converted = []
    for sentence in sentences:
        labels = sentence.labels or ()
        try:
            check_labels(labels, scheme)
        except SchemeError as error:
            line = sentence.token_lines[error.index] if error.index is not None and sentence.token_lines else sentence.line
            raise CorpusError(path, line, f"{error} (scheme {scheme.upper()})") from None
        converted.append(sentence.with_labels(convert(labels, scheme, "iob2")))  # also repairs I- after O
    return Corpus(str(path), converted, "span", scheme)
