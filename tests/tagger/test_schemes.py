"""Tag schemes: detection, checking, span extraction, writing, conversion, legal transitions
(tables), and the properties that tie them together (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.data.schemes import (SCHEMES, SchemeError, Span, allowed_transitions, check_labels, convert, detect_scheme,
                            entity_types, from_spans, is_span_label, labels_for, normalise_scheme, spans, split_label)

PREFIXES = {"iob1": "BI", "iob2": "BI", "iobes": "BIES", "bilou": "BILU"}
DECODING = ("iob2", "iobes", "bilou")

SAME = {  # one span sequence written in every scheme: adjacent PER spans, singletons, a gap
    "iob1": ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "O", "I-ORG", "I-MISC", "I-MISC"],
    "iob2": ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "O", "B-ORG", "B-MISC", "I-MISC"],
    "iobes": ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "O", "S-ORG", "B-MISC", "E-MISC"],
    "bilou": ["B-PER", "L-PER", "U-PER", "O", "U-LOC", "O", "U-ORG", "B-MISC", "L-MISC"],
}
SPANS = [Span("PER", 0, 2), Span("PER", 2, 3), Span("LOC", 4, 5), Span("ORG", 6, 7), Span("MISC", 7, 9)]


@pytest.mark.parametrize("name, expected", [
    ("iob1", "iob1"), ("IOB2", "iob2"), ("iobes", "iobes"), ("bioes", "iobes"), ("BIOES", "iobes"),
    ("Bilou", "bilou"),
])
def test_normalise_scheme(name, expected):
    assert normalise_scheme(name) == expected


@pytest.mark.parametrize("name", ["bio", "iob", "", "iob3"])
def test_normalise_scheme_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="unknown tag scheme"):
        normalise_scheme(name)


@pytest.mark.parametrize("label, expected", [
    ("O", ("O", None)),
    ("B-PER", ("B", "PER")),
    ("I-creative-work", ("I", "creative-work")),  # WNUT-17 types contain hyphens
    ("E-X", ("E", "X")), ("S-X", ("S", "X")), ("L-X", ("L", "X")), ("U-X", ("U", "X")),
    ("B-I-X", ("B", "I-X")),
])
def test_split_label(label, expected):
    assert split_label(label) == expected
    assert is_span_label(label)


@pytest.mark.parametrize("label", ["B_PER", "PER", "B-", "-PER", "b-PER", "X-PER", "O-PER", "B-PER X", "", "o", "NN"])
def test_split_label_rejects_other_shapes(label):
    with pytest.raises(SchemeError, match="is not 'O' or PREFIX-TYPE"):
        split_label(label)
    assert not is_span_label(label)


@pytest.mark.parametrize("sentences, expected", [
    ([SAME["iob1"]], "iob1"),
    ([SAME["iob2"]], "iob2"),
    ([SAME["iobes"]], "iobes"),
    ([SAME["bilou"]], "bilou"),
    ([], "iob2"),
    ([[], ["O", "O"]], "iob2"),
    ([["O", "O"], ["B-X", "I-X"]], "iob2"),
    ([["I-X", "I-X", "O"]], "iob1"),
    ([["I-X", "B-X"], ["O", "I-Y"]], "iob1"),       # IOB1's B- only between two spans of one type
    ([["I-X", "O", "B-X"]], "iob2"),                # a B- after O rules IOB1 out; the I- start is lenient
    ([["I-X", "B-Y"]], "iob2"),                     # a B- after another type is no IOB1 B- either
    ([["O", "I-X"], ["B-Y"]], "iob2"),              # evidence is pooled over the whole corpus
    ([["S-X"]], "iobes"),
    ([["B-X", "E-X"]], "iobes"),
    ([["I-X", "E-X"]], "iobes"),                    # E-/S- win over an IOB1-looking start
    ([["U-X"]], "bilou"),
    ([["B-X", "L-X"]], "bilou"),
])
def test_detect_scheme(sentences, expected):
    assert detect_scheme(sentences) == expected


def test_detect_scheme_reads_a_generator_once():
    assert detect_scheme(labels for labels in (SAME["iob1"], ["O"])) == "iob1"


@pytest.mark.parametrize("sentences, message", [
    ([["B-X", "E-X", "U-Y"]], "mix IOBES"),
    ([["S-X"], ["L-Y"]], "mix IOBES"),
    ([["B_PER"]], "is not 'O' or PREFIX-TYPE"),
    ([["O"], ["O", "PER"]], "is not 'O' or PREFIX-TYPE"),
])
def test_detect_scheme_errors(sentences, message):
    with pytest.raises(SchemeError, match=message):
        detect_scheme(sentences)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_check_labels_accepts_every_prefix_of_its_scheme(scheme):
    check_labels(["O"] + [f"{p}-X" for p in PREFIXES[scheme]], scheme)
    check_labels([], scheme)


@pytest.mark.parametrize("labels, scheme, index, message", [
    (["O", "S-PER"], "iob2", 1, "does not fit the IOB2 scheme"),
    (["O", "O", "E-PER"], "iob1", 2, "does not fit the IOB1 scheme"),
    (["B-PER", "L-PER"], "iobes", 1, "does not fit the IOBES scheme"),
    (["U-PER"], "iobes", 0, "does not fit the IOBES scheme"),
    (["E-PER"], "bilou", 0, "does not fit the BILOU scheme"),
    (["S-PER"], "bilou", 0, "does not fit the BILOU scheme"),
    (["O", "O", "B-"], "iob2", 2, "is not 'O' or PREFIX-TYPE"),
    (["B_PER"], "iobes", 0, "is not 'O' or PREFIX-TYPE"),
])
def test_check_labels_names_the_offending_index(labels, scheme, index, message):
    with pytest.raises(SchemeError, match=message) as error:
        check_labels(labels, scheme)
    assert error.value.index == index


@pytest.mark.parametrize("labels, scheme, expected", [
    ([], "iob2", []),
    (["O", "O"], "iob2", []),
    (["B-X", "I-X", "I-X"], "iob2", [Span("X", 0, 3)]),
    (["B-X", "B-X"], "iob2", [Span("X", 0, 1), Span("X", 1, 2)]),
    (["O", "B-X"], "iob2", [Span("X", 1, 2)]),                                # a span running to the end
    # lenient reading, as conlleval does: I- not continuing its type starts a span
    (["I-PER", "I-PER"], "iob2", [Span("PER", 0, 2)]),
    (["B-PER", "I-LOC"], "iob2", [Span("PER", 0, 1), Span("LOC", 1, 2)]),
    (["O", "I-X", "O", "I-X"], "iob2", [Span("X", 1, 2), Span("X", 3, 4)]),
    (["I-X", "B-X"], "iob2", [Span("X", 0, 1), Span("X", 1, 2)]),
    # IOB1
    (["I-X", "I-X", "B-X", "O"], "iob1", [Span("X", 0, 2), Span("X", 2, 3)]),
    (["I-X", "I-Y"], "iob1", [Span("X", 0, 1), Span("Y", 1, 2)]),
    (["B-X", "I-X"], "iob1", [Span("X", 0, 2)]),
    # IOBES and BILOU, well-formed and not
    (["S-X", "B-Y", "I-Y", "E-Y"], "iobes", [Span("X", 0, 1), Span("Y", 1, 4)]),
    (["U-X", "B-Y", "I-Y", "L-Y"], "bilou", [Span("X", 0, 1), Span("Y", 1, 4)]),
    (["B-X", "O"], "iobes", [Span("X", 0, 1)]),                                # B- never closed
    (["B-X", "I-X"], "iobes", [Span("X", 0, 2)]),                              # ... up to the end
    (["I-X"], "iobes", [Span("X", 0, 1)]),
    (["E-X"], "iobes", [Span("X", 0, 1)]),                                     # E- after O starts and ends
    (["L-X", "L-X"], "bilou", [Span("X", 0, 1), Span("X", 1, 2)]),
    (["B-X", "E-Y"], "iobes", [Span("X", 0, 1), Span("Y", 1, 2)]),
    (["B-X", "S-X", "E-X"], "iobes", [Span("X", 0, 1), Span("X", 1, 2), Span("X", 2, 3)]),
    (["B-X", "B-X", "E-X"], "iobes", [Span("X", 0, 1), Span("X", 1, 3)]),
    (["B-X", "U-X", "O", "I-X", "L-X"], "bilou", [Span("X", 0, 1), Span("X", 1, 2), Span("X", 3, 5)]),
])
def test_spans(labels, scheme, expected):
    assert spans(labels, scheme) == expected


def test_spans_checks_the_scheme_first():
    with pytest.raises(SchemeError) as error:
        spans(["O", "B-X", "S-X"], "iob2")
    assert error.value.index == 2


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_sequence_in_every_scheme(scheme):
    assert spans(SAME[scheme], scheme) == SPANS
    assert from_spans(SPANS, len(SAME[scheme]), scheme) == SAME[scheme]
    assert from_spans(reversed(SPANS), len(SAME[scheme]), scheme) == SAME[scheme]  # any order


@pytest.mark.parametrize("found, length, scheme, expected", [
    ([], 0, "iob2", []),
    ([], 3, "bilou", ["O", "O", "O"]),
    ([Span("X", 1, 2)], 4, "iob1", ["O", "I-X", "O", "O"]),
    ([Span("X", 0, 1), Span("X", 1, 2)], 2, "iob1", ["I-X", "B-X"]),
    ([Span("X", 0, 1), Span("Y", 1, 2)], 2, "iob1", ["I-X", "I-Y"]),           # B- only for the same type
    ([Span("X", 0, 1), Span("X", 2, 3)], 3, "iob1", ["I-X", "O", "I-X"]),
    ([Span("X", 0, 3)], 3, "iob2", ["B-X", "I-X", "I-X"]),
    ([Span("X", 0, 3)], 3, "iobes", ["B-X", "I-X", "E-X"]),
    ([Span("X", 0, 3)], 3, "bilou", ["B-X", "I-X", "L-X"]),
    ([Span("X", 2, 3)], 3, "iobes", ["O", "O", "S-X"]),
    ([Span("X", 2, 3)], 3, "bilou", ["O", "O", "U-X"]),
])
def test_from_spans(found, length, scheme, expected):
    assert from_spans(found, length, scheme) == expected


@pytest.mark.parametrize("source, target", list(itertools.product(SCHEMES, repeat=2)))
def test_convert_between_every_pair(source, target):
    assert convert(SAME[source], source, target) == SAME[target]


@pytest.mark.parametrize("labels, source, target, expected", [
    (["O", "I-X", "I-X", "I-Y"], "iob2", "iob2", ["O", "B-X", "I-X", "B-Y"]),  # repairs ill-formed IOB2
    (["O", "I-X", "I-X"], "iob2", "iobes", ["O", "B-X", "E-X"]),
    (["B-X", "O", "I-X"], "iobes", "iob2", ["B-X", "O", "B-X"]),
    (["B-X", "O"], "iobes", "iobes", ["S-X", "O"]),
    (["I-X", "I-X", "B-X", "I-Y"], "iob1", "bilou", ["B-X", "L-X", "U-X", "U-Y"]),
    (["B-X", "B-X"], "iob2", "iob1", ["I-X", "B-X"]),
    ([], "iob1", "iobes", []),
])
def test_convert_ill_formed_and_edge_sequences(labels, source, target, expected):
    assert convert(labels, source, target) == expected


def test_convert_refuses_labels_outside_the_source_scheme():
    with pytest.raises(SchemeError):
        convert(["S-X"], "iob2", "iobes")


@pytest.mark.parametrize("labels, expected", [
    (["O", "B-PER", "I-PER", "S-LOC", "B-creative-work"], ["LOC", "PER", "creative-work"]),
    (["O"], []),
    ([], []),
])
def test_entity_types(labels, expected):
    assert entity_types(labels) == expected


@pytest.mark.parametrize("scheme, expected", [
    ("iob1", ["O", "B-A", "I-A", "B-B", "I-B"]),
    ("iob2", ["O", "B-A", "I-A", "B-B", "I-B"]),
    ("iobes", ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"]),
    ("bilou", ["O", "B-A", "I-A", "L-A", "U-A", "B-B", "I-B", "L-B", "U-B"]),
])
def test_labels_for(scheme, expected):
    assert labels_for(["B", "A"], scheme) == expected  # sorted by type


def _transition(labels, scheme, previous, current):
    _, transitions, _ = allowed_transitions(labels, scheme)
    return transitions[labels.index(previous)][labels.index(current)]


@pytest.mark.parametrize("scheme, previous, current, allowed", [
    ("iob2", "O", "I-A", False), ("iob2", "O", "B-A", True), ("iob2", "B-A", "I-A", True),
    ("iob2", "I-A", "I-A", True), ("iob2", "B-A", "I-B", False), ("iob2", "I-A", "B-A", True),
    ("iob2", "B-A", "O", True),
    ("iobes", "B-A", "O", False), ("iobes", "B-A", "E-A", True), ("iobes", "B-A", "E-B", False),
    ("iobes", "I-A", "I-A", True), ("iobes", "E-A", "I-A", False), ("iobes", "S-A", "S-A", True),
    ("iobes", "O", "E-A", False), ("iobes", "B-A", "B-A", False), ("iobes", "E-A", "B-B", True),
    ("bilou", "B-A", "L-A", True), ("bilou", "U-A", "L-A", False), ("bilou", "I-A", "U-B", False),
    ("bilou", "L-A", "O", True), ("bilou", "O", "U-B", True),
])
def test_allowed_transitions_table(scheme, previous, current, allowed):
    assert _transition(labels_for(["A", "B"], scheme), scheme, previous, current) is allowed


@pytest.mark.parametrize("scheme, starts, ends", [
    ("iob2", {"O", "B-A"}, {"O", "B-A", "I-A"}),
    ("iobes", {"O", "B-A", "S-A"}, {"O", "E-A", "S-A"}),
    ("bilou", {"O", "B-A", "U-A"}, {"O", "L-A", "U-A"}),
])
def test_allowed_starts_and_ends(scheme, starts, ends):
    labels = labels_for(["A"], scheme)
    start, _, end = allowed_transitions(labels, scheme)
    assert {label for label, ok in zip(labels, start) if ok} == starts
    assert {label for label, ok in zip(labels, end) if ok} == ends


@pytest.mark.parametrize("scheme", DECODING)
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
    with pytest.raises(ValueError, match="iob1"):
        allowed_transitions(labels_for(["A"], "iob1"), "iob1")


# Properties ---------------------------------------------------------------------------------

TYPES = ["PER", "LOC", "creative-work"]
span_sets = st.integers(1, 14).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 5), st.sampled_from(TYPES)), max_size=7)))


def _non_overlapping(n, raw):
    taken, result = set(), []
    for start, size, label in raw:
        end = min(n, start + size)
        if taken.isdisjoint(range(start, end)):
            taken.update(range(start, end))
            result.append(Span(label, start, end))
    return sorted(result, key=lambda s: s.start)


@st.composite
def label_sequences(draw):
    """Any sequence of one scheme's labels, well-formed or not."""
    scheme = draw(st.sampled_from(SCHEMES))
    labels = draw(st.lists(st.sampled_from(labels_for(TYPES[:2], scheme)), max_size=12))
    return scheme, labels


@settings(deadline=None)
@given(span_sets, st.sampled_from(SCHEMES))
def test_from_spans_then_spans_is_identity(data, scheme):
    n, raw = data
    found = _non_overlapping(n, raw)
    labels = from_spans(found, n, scheme)
    check_labels(labels, scheme)
    assert spans(labels, scheme) == found


@settings(deadline=None)
@given(span_sets, st.sampled_from(SCHEMES), st.sampled_from(SCHEMES))
def test_conversion_round_trips(data, source, target):
    n, raw = data
    found = _non_overlapping(n, raw)
    labels = from_spans(found, n, source)
    converted = convert(labels, source, target)
    assert converted == from_spans(found, n, target)
    assert convert(converted, target, source) == labels


@settings(deadline=None)
@given(span_sets, st.sampled_from(SCHEMES))
def test_detect_scheme_recognises_written_sequences(data, scheme):
    n, raw = data
    labels = from_spans(_non_overlapping(n, raw), n, scheme)
    detected = detect_scheme([labels])
    if scheme in ("iobes", "bilou") and set(labels) != {"O"}:
        assert detected == scheme
    else:  # IOB1 and IOB2 agree on every sequence without spans; IOB1 without B- reads as IOB2 too
        assert spans(labels, detected) == spans(labels, scheme)


@settings(deadline=None)
@given(label_sequences(), st.sampled_from(SCHEMES))
def test_convert_keeps_the_lenient_reading_of_any_sequence(data, target):
    source, labels = data
    converted = convert(labels, source, target)
    assert len(converted) == len(labels)
    assert spans(converted, target) == spans(labels, source)
    assert convert(converted, target, target) == converted  # the output is well-formed


@settings(deadline=None)
@given(label_sequences(), st.sampled_from(DECODING))
def test_converted_sequences_are_legal_paths(data, target):
    source, labels = data
    converted = convert(labels, source, target)
    if not converted:
        return
    vocabulary = labels_for(TYPES[:2], target)
    start, transitions, end = allowed_transitions(vocabulary, target)
    path = [vocabulary.index(label) for label in converted]
    assert start[path[0]] and end[path[-1]]
    assert all(transitions[a][b] for a, b in zip(path, path[1:]))


@settings(deadline=None)
@given(st.lists(st.sampled_from(labels_for(TYPES[:2], "iob2")), max_size=12))
def test_iob1_and_lenient_iob2_read_b_i_sequences_alike(labels):
    """So a corpus detected as the wrong one of the two still gets the right spans."""
    assert spans(labels, "iob1") == spans(labels, "iob2")
