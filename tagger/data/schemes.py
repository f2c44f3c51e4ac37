"""Tag schemes for span labels: detection, conversion, span extraction, legal transitions.

Pure functions over lists of label strings. The internal form of every span task is
IOB2 (``B-PER I-PER O``); readers convert to it at the edge, evaluation and output use it.
The model may be trained on IOBES instead (often a little better for NER); the
conversion back to IOB2 happens before anything leaves the library.

Supported schemes:

- ``iob1``: ``I-X`` starts a span; ``B-X`` only separates two adjacent spans of type X.
- ``iob2``: every span starts with ``B-X``; ``I-X`` continues it.
- ``iobes`` (alias ``bioes``): ``S-X`` single-token span, ``B-X I-X* E-X`` otherwise.
- ``bilou``: as IOBES with ``U-`` for single and ``L-`` for last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

Scheme = Literal["iob1", "iob2", "iobes", "bilou"]
SCHEMES: tuple[Scheme, ...] = ("iob1", "iob2", "iobes", "bilou")
_PREFIXES: dict[Scheme, str] = {"iob1": "BI", "iob2": "BI", "iobes": "BIES", "bilou": "BILU"}
_LABEL = re.compile(r"^([BIESLU])-(\S+)$")


class Span(NamedTuple):
    """A labelled span of tokens, ``end`` exclusive."""

    label: str
    start: int
    end: int


class SchemeError(ValueError):
    """A label or sequence that fits no scheme; ``index`` is the offending position."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def normalise_scheme(name: str) -> Scheme:
    name = name.lower()
    if name == "bioes":
        return "iobes"
    if name not in SCHEMES:
        raise ValueError(f"unknown tag scheme {name!r}; expected one of {', '.join(SCHEMES)}")
    return name  # type: ignore[return-value]


def split_label(label: str) -> tuple[str, str | None]:
    """``'B-PER'`` -> ``('B', 'PER')``; ``'O'`` -> ``('O', None)``. Raises on other shapes."""
    if label == "O":
        return "O", None
    match = _LABEL.fullmatch(label)
    if match is None:
        raise SchemeError(f"label {label!r} is not 'O' or PREFIX-TYPE with a prefix in B, I, E, S, L, U")
    return match.group(1), match.group(2)


def is_span_label(label: str) -> bool:
    return label == "O" or _LABEL.fullmatch(label) is not None


def detect_scheme(sentences: Iterable[Sequence[str]]) -> Scheme:
    """Guess the scheme of a corpus from its label sequences.

    ``E-``/``S-`` mean IOBES, ``L-``/``U-`` mean BILOU. Otherwise IOB1 when some span starts
    with ``I-`` and no ``B-`` ever starts a span after ``O`` (IOB1 uses ``B-`` only between
    two adjacent spans of one type), else IOB2.

    Raises:
        SchemeError: a label of the wrong shape, or prefixes of two incompatible schemes.
    """
    prefixes: set[str] = set()
    i_starts = b_starts_after_outside = 0
    for labels in sentences:
        prev_type: str | None = None
        for label in labels:
            prefix, kind = split_label(label)
            prefixes.add(prefix)
            if prefix == "I" and kind != prev_type:
                i_starts += 1
            elif prefix == "B" and kind != prev_type:
                b_starts_after_outside += 1
            prev_type = kind
    if prefixes & {"E", "S"} and prefixes & {"L", "U"}:
        raise SchemeError("labels mix IOBES (E-, S-) and BILOU (L-, U-) prefixes")
    if prefixes & {"E", "S"}:
        return "iobes"
    if prefixes & {"L", "U"}:
        return "bilou"
    if i_starts and not b_starts_after_outside:
        return "iob1"
    return "iob2"


def check_labels(labels: Sequence[str], scheme: Scheme) -> None:
    """Raise SchemeError (with the index) for the first label whose prefix ``scheme`` lacks."""
    allowed = _PREFIXES[scheme]
    for index, label in enumerate(labels):
        try:
            prefix, _ = split_label(label)
        except SchemeError as error:
            raise SchemeError(str(error), index) from None
        if prefix != "O" and prefix not in allowed:
            raise SchemeError(f"label {label!r} does not fit the {scheme.upper()} scheme", index)


def spans(labels: Sequence[str], scheme: Scheme = "iob2") -> list[Span]:
    """Extract spans. Ill-formed sequences are read leniently, the way conlleval does:
    an ``I-X`` (or ``E-X``/``L-X``) that does not continue a span of type X starts one."""
    check_labels(labels, scheme)
    result: list[Span] = []
    start, kind = -1, None
    for index, label in enumerate(labels):
        prefix, label_type = split_label(label)
        begins = prefix in "BSU" or (prefix in "IEL" and label_type != kind)
        if prefix == "O" or begins:
            if kind is not None:
                result.append(Span(kind, start, index))
            start, kind = (index, label_type) if prefix != "O" else (-1, None)
        if prefix in "ESLU":  # these close the span they are in
            result.append(Span(kind, start, index + 1))  # type: ignore[arg-type]
            start, kind = -1, None
    if kind is not None:
        result.append(Span(kind, start, len(labels)))
    return result


def from_spans(found: Iterable[Span], length: int, scheme: Scheme = "iob2") -> list[str]:
    """Write spans (non-overlapping) as a label sequence of ``length`` in ``scheme``."""
    labels = ["O"] * length
    previous_end, previous_type = -1, None
    for span in sorted(found, key=lambda s: s.start):
        size = span.end - span.start
        for index in range(span.start, span.end):
            labels[index] = f"I-{span.label}"
        if scheme == "iob1":
            if span.start == previous_end and span.label == previous_type:
                labels[span.start] = f"B-{span.label}"
        elif scheme == "iob2":
            labels[span.start] = f"B-{span.label}"
        else:
            single, last = ("S", "E") if scheme == "iobes" else ("U", "L")
            if size == 1:
                labels[span.start] = f"{single}-{span.label}"
            else:
                labels[span.start] = f"B-{span.label}"
                labels[span.end - 1] = f"{last}-{span.label}"
        previous_end, previous_type = span.end, span.label
    return labels


def convert(labels: Sequence[str], source: Scheme, target: Scheme) -> list[str]:
    """Convert a label sequence between schemes (via its spans)."""
    return from_spans(spans(labels, source), len(labels), target)


def entity_types(labels: Iterable[str]) -> list[str]:
    """The sorted entity types among span labels."""
    return sorted({split_label(label)[1] for label in labels} - {None})  # type: ignore[arg-type]


def labels_for(types: Iterable[str], scheme: Scheme) -> list[str]:
    """Every label of ``scheme`` for the given entity types, ``O`` first."""
    prefixes = "BI" if scheme in ("iob1", "iob2") else _PREFIXES[scheme]
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in prefixes]


def allowed_transitions(
    labels: Sequence[str], scheme: Scheme
) -> tuple[list[bool], list[list[bool]], list[bool]]:
    """Which label may start a sentence, follow another, and end a sentence.

    Returns:
        ``(start, transitions, end)`` where ``transitions[i][j]`` says label ``j`` may
        follow label ``i``. Passed to the CRF as constraints; IOB1 is not a decoding scheme.
    """
    parsed = [split_label(label) for label in labels]

    def may_follow(prev: tuple[str, str | None], curr: tuple[str, str | None]) -> bool:
        (p, pt), (c, ct) = prev, curr
        if scheme == "iob2":
            return c != "I" or (p in "BI" and pt == ct)
        single, last = ("S", "E") if scheme == "iobes" else ("U", "L")
        inside_open = p in ("B", "I")
        if c in ("I", last):
            return inside_open and pt == ct
        return not inside_open  # O, B-, S-/U- need the previous span closed

    if scheme not in ("iob2", "iobes", "bilou"):
        raise ValueError(f"cannot constrain decoding in the {scheme} scheme")
    closes = {"iob2": "OBI", "iobes": "OSE", "bilou": "OUL"}[scheme]
    start = [p in ("O", "B", "S", "U") for p, _ in parsed]
    end = [p in closes for p, _ in parsed]
    transitions = [[may_follow(a, b) for b in parsed] for a in parsed]
    return start, transitions, end
