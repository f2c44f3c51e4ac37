"""Tag schemes: detection, conversion, spans, legal transitions (tables + properties)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagger.schemes import (SCHEMES, Span, SchemeError, allowed_transitions, check_labels, convert, detect_scheme,
                            from_spans, labels_for, spans)

SAME = {  # one span sequence written in every scheme
    "iob1": ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "O", "I-ORG"],
    "iob2": ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "O", "B-ORG"],
    "iobes": ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "O", "S-ORG"],
    "bilou": ["B-PER", "L-PER", "U-PER", "O", "U-LOC", "O", "U-ORG"],
}
SPANS = [Span("PER", 0, 2), Span("PER", 2, 3), Span("LOC", 4, 5), Span("ORG", 6, 7)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_spans_in_every_scheme(scheme):
    assert spans(SAME[scheme], scheme) == SPANS
    assert from_spans(SPANS, 7, scheme) == SAME[scheme]


@pytest.mark.parametrize("source, target", list(itertools.permutations(SCHEMES, 2)))
def test_convert_between_every_pair(source, target):
    assert convert(SAME[source], source, target) == SAME[target]


@pytest.mark.parametrize("sentences, expected", [
    ([SAME["iob2"]], "iob2"),
    ([SAME["iob1"]], "iob1"),
    ([SAME["iobes"]], "iobes"),
    ([SAME["bilou"]], "bilou"),
    ([["O", "O"], ["B-X", "I-X"]], "iob2"),
    ([["I-X", "I-X", "O"]], "iob1"),
    ([["I-X", "O", "B-X"]], "iob2"),  # a B- after O rules out IOB1; the I- start is read leniently
])
def test_detect_scheme(sentences, expected):
    assert detect_scheme(sentences) == expected


@pytest.mark.parametrize("sentences, message", [
    ([["B-X", "E-X", "U-Y"]], "mix IOBES"),
    ([["B_PER"]], "is not 'O' or PREFIX-TYPE"),
    ([["PER"]], "is not 'O' or PREFIX-TYPE"),
])
def test_detect_scheme_errors(sentences, message):
    with pytest.raises(SchemeError, match=message):
        detect_scheme(sentences)


@pytest.mark.parametrize("labels, scheme, index", [
    (["O", "S-PER"], "iob2", 1),
    (["B-PER", "L-PER"], "iobes", 1),
    (["E-PER"], "bilou", 0),
    (["O", "O", "B-"], "iob2", 2),
])
def test_check_labels_names_the_offending_index(labels, scheme, index):
    with pytest.raises(SchemeError) as error:
        check_labels(labels, scheme)
    assert error.value.index == index


@pytest.mark.parametrize("labels, expected", [
    (["I-PER", "I-PER"], [Span("PER", 0, 2)]),                 # I- after O starts a span
    (["B-PER", "I-LOC"], [Span("PER", 0, 1), Span("LOC", 1, 2)]),  # type change starts a span
    (["O", "I-X", "O", "I-X"], [Span("X", 1, 2), Span("X", 3, 4)]),
    (["B-X", "I-X", "I-X"], [Span("X", 0, 3)]),
    ([], []),
])
def test_iob2_spans_are_lenient_like_conlleval(labels, expected):
    assert spans(labels) == expected


def test_repairing_ill_formed_iob2():
    assert convert(["O", "I-X", "I-X", "I-Y"], "iob2", "iob2") == ["O", "B-X", "I-X", "B-Y"]


@pytest.mark.parametrize("scheme", ["iob2", "iobes", "bilou"])
def test_allowed_transitions_accept_exactly_the_well_formed_sequences(scheme):
    labels = labels_for(["A", "B"], scheme)
    start, transitions, end = allowed_transitions(labels, scheme)
    for length in (1, 2, 3):
        for sequence in itertools.product(range(len(labels)), repeat=length):
            legal = start[sequence[0]] and end[sequence[-1]] and all(
                transitions[a][b] for a, b in zip(sequence, sequence[1:]))
            written = [labels[i] for i in sequence]
            well_formed = from_spans(spans(written, scheme), length, scheme) == written
            assert legal == well_formed, written


def test_iob1_is_not_a_decoding_scheme():
    with pytest.raises(ValueError):
        allowed_transitions(labels_for(["A"], "iob1"), "iob1")


span_sets = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 4), st.sampled_from(["PER", "LOC", "X"])),
                         max_size=6)))


def _non_overlapping(n, raw):
    taken, result = set(), []
    for start, size, label in raw:
        end = min(n, start + size)
        if taken.isdisjoint(range(start, end)):
            taken.update(range(start, end))
            result.append(Span(label, start, end))
    return sorted(result, key=lambda s: s.start)


@given(span_sets, st.sampled_from(SCHEMES))
def test_from_spans_then_spans_is_identity(data, scheme):
    n, raw = data
    found = _non_overlapping(n, raw)
    assert spans(from_spans(found, n, scheme), scheme) == found


@given(span_sets, st.sampled_from(SCHEMES), st.sampled_from(SCHEMES))
def test_conversion_round_trips(data, source, target):
    n, raw = data
    labels = from_spans(_non_overlapping(n, raw), n, source)
    assert convert(convert(labels, source, target), target, source) == labels
