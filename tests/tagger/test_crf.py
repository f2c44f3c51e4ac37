"""The CRF against brute-force enumeration of every tag sequence."""

from __future__ import annotations

import itertools

import pytest
import torch

from tagger.crf import CRF, SoftmaxDecoder
from tagger.schemes import allowed_transitions, labels_for



@pytest.fixture(autouse=True)
def double_precision():
    """Exact comparisons need float64; restored after each test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def sequence_score(crf, emissions, tags):
    start, trans, end = crf._scores()
    score = start[tags[0]] + emissions[0, tags[0]]
    for t in range(1, len(tags)):
        score = score + trans[tags[t - 1], tags[t]] + emissions[t, tags[t]]
    return score + end[tags[-1]]


def brute_force(crf, emissions, length):
    """All sequences' scores for one row: (log Z, best sequence, marginals (T, L))."""
    labels = emissions.size(1)
    sequences = list(itertools.product(range(labels), repeat=length))
    scores = torch.stack([sequence_score(crf, emissions[:length], s) for s in sequences])
    log_z = torch.logsumexp(scores, 0)
    best = sequences[int(scores.argmax())]
    marginals = torch.zeros(length, labels)
    for sequence, score in zip(sequences, scores):
        for t, tag in enumerate(sequence):
            marginals[t, tag] += torch.exp(score - log_z)
    return log_z, list(best), marginals


def random_case(seed, labels, lengths, constraints=None):
    torch.manual_seed(seed)
    crf = CRF(labels, constraints)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    emissions = torch.randn(len(lengths), max(lengths), labels) * 2
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tags = torch.randint(labels, (len(lengths), max(lengths)))
    return crf, emissions, mask, tags


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("labels, lengths", [(3, [1]), (3, [4, 2, 1]), (4, [5, 3]), (2, [5, 5])])
def test_against_brute_force(seed, labels, lengths):
    crf, emissions, mask, tags = random_case(seed, labels, lengths)
    log_likelihood = crf.log_likelihood(emissions, tags, mask)
    decoded = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for row, length in enumerate(lengths):
        log_z, best, expected = brute_force(crf, emissions[row], length)
        gold = sequence_score(crf, emissions[row], tags[row, :length].tolist())
        assert log_likelihood[row].item() == pytest.approx((gold - log_z).item(), abs=1e-9)
        assert decoded[row, :length].tolist() == best
        assert decoded[row, length:].eq(0).all()
        assert torch.allclose(marginals[row, :length], expected, atol=1e-9)
        assert torch.allclose(marginals[row, :length].sum(1), torch.ones(length))
        assert marginals[row, length:].eq(0).all()


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
@pytest.mark.parametrize("seed", range(4))
def test_constrained_decoding_is_legal_and_optimal(scheme, seed):
    names = labels_for(["A", "B"], scheme)
    constraints = allowed_transitions(names, scheme)
    start_ok, trans_ok, end_ok = constraints
    crf, emissions, mask, _ = random_case(seed, len(names), [4, 3], constraints)
    decoded = crf.decode(emissions, mask)
    for row, length in enumerate([4, 3]):
        path = decoded[row, :length].tolist()
        assert start_ok[path[0]] and end_ok[path[-1]]
        assert all(trans_ok[a][b] for a, b in zip(path, path[1:]))
        legal = [s for s in itertools.product(range(len(names)), repeat=length)
                 if start_ok[s[0]] and end_ok[s[-1]] and all(trans_ok[a][b] for a, b in zip(s, s[1:]))]
        best = max(legal, key=lambda s: sequence_score(crf, emissions[row], list(s)).item())
        assert path == list(best)


def test_gradients_flow():
    crf, emissions, mask, tags = random_case(0, 4, [5, 2])
    emissions.requires_grad_(True)
    (-crf.log_likelihood(emissions, tags, mask).sum()).backward()
    assert torch.isfinite(crf.transitions.grad).all() and crf.transitions.grad.abs().sum() > 0
    assert emissions.grad[1, 2:].eq(0).all()  # padding gets no gradient


def test_softmax_decoder():
    torch.manual_seed(3)
    emissions = torch.randn(2, 4, 5)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.randint(5, (2, 4))
    decoder = SoftmaxDecoder()
    logp = emissions.log_softmax(2)
    expected = torch.stack([logp[0, range(4), tags[0]].sum(), logp[1, range(2), tags[1, :2]].sum()])
    assert torch.allclose(decoder.log_likelihood(emissions, tags, mask), expected)
    decoded = decoder.decode(emissions, mask)
    assert decoded[0].tolist() == emissions[0].argmax(1).tolist() and decoded[1, 2:].eq(0).all()
    assert torch.allclose(decoder.marginals(emissions, mask)[1, :2].sum(1), torch.ones(2))
