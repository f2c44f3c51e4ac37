"""The CRF and the softmax decoder against brute-force enumeration of every tag sequence.

Everything runs in float64 so that exact enumeration and the dynamic programmes agree to
1e-9. The brute force scores sequences from the raw parameters (``start``, ``transitions``,
``end``) and, under constraints, enumerates only the legal sequences: it never looks at
how the CRF implements forbidden transitions.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from tagger.data.schemes import allowed_transitions, labels_for
from tagger.model.crf import CRF, SoftmaxDecoder

SEEDS = range(8)
# (number of tags, lengths of the rows of one batch): single tokens, full rows, padding,
# the longest row not first, and rows of one token padded to five.
SHAPES = [
    (3, [1]),
    (3, [2, 1]),
    (3, [4, 2, 1, 3]),
    (4, [5, 3]),
    (4, [1, 5, 2]),
    (4, [5, 5]),
    (3, [3, 5, 1, 4, 2]),
]
ATOL = 1e-9


# --------------------------------------------------------------------------- helpers

pytestmark = pytest.mark.usefixtures("one_thread")


def make_crf(seed: int, num_tags: int, constraints=None) -> CRF:
    """A float64 CRF with parameters large enough that the best path is not trivial."""
    torch.manual_seed(seed)
    crf = CRF(num_tags, constraints).double()
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    return crf


def make_batch(seed: int, num_tags: int, lengths: list[int]):
    """Emissions (B, T, L), mask (B, T) as right padding, and random gold tags (B, T)."""
    generator = torch.Generator().manual_seed(1000 + seed)
    width = max(lengths)
    emissions = torch.randn(len(lengths), width, num_tags, generator=generator, dtype=torch.float64) * 2
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tags = torch.randint(num_tags, (len(lengths), width), generator=generator)
    return emissions, mask, tags


def all_sequences(num_tags: int, length: int, constraints=None) -> torch.Tensor:
    """(N, length) every tag sequence, or only the legal ones under ``constraints``."""
    sequences = torch.tensor(list(itertools.product(range(num_tags), repeat=length)), dtype=torch.long)
    if constraints is not None:
        sequences = torch.stack([s for s in sequences if is_legal(s.tolist(), constraints)])
    return sequences


def is_legal(path: list[int], constraints) -> bool:
    start_ok, trans_ok, end_ok = constraints
    return bool(start_ok[path[0]] and end_ok[path[-1]] and all(trans_ok[a][b] for a, b in zip(path, path[1:])))


def path_scores(crf: CRF, emissions: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """(N,) unnormalised score of each sequence for one row's real emissions (T, L)."""
    with torch.no_grad():
        steps = torch.arange(sequences.size(1))
        score = crf.start[sequences[:, 0]] + crf.end[sequences[:, -1]]
        score = score + emissions[steps, sequences].sum(1)
        score = score + crf.transitions[sequences[:, :-1], sequences[:, 1:]].sum(1)
    return score


def brute_force(crf: CRF, emissions: torch.Tensor, length: int, constraints=None):
    """For one row: (log Z, best sequence, (length, L) marginals) by enumeration."""
    num_tags = emissions.size(-1)
    sequences = all_sequences(num_tags, length, constraints)
    scores = path_scores(crf, emissions[:length], sequences)
    log_z = torch.logsumexp(scores, 0)
    probabilities = torch.exp(scores - log_z)  # (N,)
    marginals = torch.zeros(length, num_tags, dtype=torch.float64)
    for t in range(length):
        marginals[t].index_add_(0, sequences[:, t], probabilities)
    return log_z, sequences[int(scores.argmax())].tolist(), marginals


def scheme_constraints(scheme: str):
    labels = labels_for(["PER", "LOC"], scheme)
    return labels, allowed_transitions(labels, scheme)


# --------------------------------------------------------------------------- unconstrained CRF

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_tags, lengths", SHAPES)
def test_log_likelihood_is_gold_score_minus_log_partition(seed, num_tags, lengths):
    crf = make_crf(seed, num_tags)
    emissions, mask, tags = make_batch(seed, num_tags, lengths)
    log_likelihood = crf.log_likelihood(emissions, tags, mask)
    assert log_likelihood.shape == (len(lengths),) and log_likelihood.dtype == torch.float64
    for row, length in enumerate(lengths):
        log_z, _, _ = brute_force(crf, emissions[row], length)
        gold = path_scores(crf, emissions[row, :length], tags[row, :length].unsqueeze(0))[0]
        assert log_likelihood[row].item() == pytest.approx((gold - log_z).item(), abs=ATOL)
        assert log_likelihood[row].item() <= 0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_tags, lengths", SHAPES)
def test_decode_is_the_argmax_sequence(seed, num_tags, lengths):
    crf = make_crf(seed, num_tags)
    emissions, mask, _ = make_batch(seed, num_tags, lengths)
    decoded = crf.decode(emissions, mask)
    assert decoded.shape == mask.shape and decoded.dtype == torch.long
    for row, length in enumerate(lengths):
        _, best, _ = brute_force(crf, emissions[row], length)
        assert decoded[row, :length].tolist() == best
        assert decoded[row, length:].eq(0).all(), "padding is tagged 0"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_tags, lengths", SHAPES)
def test_marginals_match_enumeration(seed, num_tags, lengths):
    crf = make_crf(seed, num_tags)
    emissions, mask, _ = make_batch(seed, num_tags, lengths)
    marginals = crf.marginals(emissions, mask)
    assert marginals.shape == emissions.shape
    for row, length in enumerate(lengths):
        _, _, expected = brute_force(crf, emissions[row], length)
        torch.testing.assert_close(marginals[row, :length], expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(marginals[row, :length].sum(1), torch.ones(length, dtype=torch.float64),
                                   atol=ATOL, rtol=0)
        assert marginals[row, length:].eq(0).all(), "padding has zero probability everywhere"
    assert (marginals >= 0).all() and (marginals <= 1 + ATOL).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_padding_content_is_ignored(seed):
    """Whatever emissions and tags sit at padding, nothing about the real tokens changes,
    and each row gives the same answers padded in a batch as alone."""
    lengths = [5, 2, 3, 1]
    crf = make_crf(seed, 4)
    emissions, mask, tags = make_batch(seed, 4, lengths)
    noisy_emissions = emissions.masked_fill(~mask.unsqueeze(2), 0) + 50 * torch.randn_like(emissions) * (~mask).unsqueeze(2)
    noisy_tags = torch.where(mask, tags, torch.randint_like(tags, 4))
    for e, t in ((emissions, tags), (noisy_emissions, noisy_tags)):
        ll, decoded, marginals = crf.log_likelihood(e, t, mask), crf.decode(e, mask), crf.marginals(e, mask)
        for row, length in enumerate(lengths):
            alone = emissions[row : row + 1, :length]
            alone_mask = torch.ones(1, length, dtype=torch.bool)
            alone_tags = tags[row : row + 1, :length]
            assert ll[row].item() == pytest.approx(crf.log_likelihood(alone, alone_tags, alone_mask).item(), abs=ATOL)
            assert decoded[row, :length].tolist() == crf.decode(alone, alone_mask)[0].tolist()
            torch.testing.assert_close(marginals[row, :length], crf.marginals(alone, alone_mask)[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("seed", SEEDS[:4])
@pytest.mark.parametrize("length", [1, 2, 4])
def test_probabilities_of_all_sequences_sum_to_one(seed, length):
    """exp(log_likelihood) over every tag sequence of a row is a distribution."""
    num_tags = 3
    crf = make_crf(seed, num_tags)
    emissions, _, _ = make_batch(seed, num_tags, [length])
    sequences = all_sequences(num_tags, length)
    batch = emissions.expand(len(sequences), -1, -1)
    mask = torch.ones(len(sequences), length, dtype=torch.bool)
    total = torch.logsumexp(crf.log_likelihood(batch, sequences, mask), 0)
    assert total.item() == pytest.approx(0.0, abs=ATOL)


# --------------------------------------------------------------------------- constraints

@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lengths", [[1], [4, 2, 3, 1], [3, 4]])
def test_constrained_crf_matches_enumeration_of_legal_sequences(scheme, seed, lengths):
    labels, constraints = scheme_constraints(scheme)
    num_tags = len(labels)
    crf = make_crf(seed, num_tags, constraints)
    emissions, mask, _ = make_batch(seed, num_tags, lengths)
    # Gold: a legal sequence per row (the best legal one of a second, random scoring).
    other = make_crf(seed + 100, num_tags, constraints)
    tags = other.decode(torch.randn_like(emissions), mask)
    log_likelihood = crf.log_likelihood(emissions, tags, mask)
    decoded = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for row, length in enumerate(lengths):
        path = decoded[row, :length].tolist()
        assert is_legal(path, constraints), [labels[i] for i in path]
        gold = tags[row, :length].tolist()
        assert is_legal(gold, constraints)
        log_z, best, expected = brute_force(crf, emissions[row], length, constraints)
        assert path == best
        gold_score = path_scores(crf, emissions[row, :length], torch.tensor([gold]))[0]
        assert log_likelihood[row].item() == pytest.approx((gold_score - log_z).item(), abs=1e-8)
        torch.testing.assert_close(marginals[row, :length], expected, atol=1e-8, rtol=0)
        torch.testing.assert_close(marginals[row, :length].sum(1), torch.ones(length, dtype=torch.float64),
                                   atol=ATOL, rtol=0)
        assert marginals[row, length:].eq(0).all()


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
@pytest.mark.parametrize("seed", SEEDS)
def test_constrained_decoding_is_legal_even_when_emissions_favour_illegal_tags(scheme, seed):
    """Emissions that strongly prefer I-/E- everywhere (illegal at the start, after O)."""
    labels, constraints = scheme_constraints(scheme)
    crf = make_crf(seed, len(labels), constraints)
    emissions, mask, _ = make_batch(seed, len(labels), [5, 3, 1, 4])
    inside = torch.tensor([label[0] in "IE" for label in labels])
    emissions = emissions + 20 * inside.to(emissions.dtype)
    decoded = crf.decode(emissions, mask)
    for row, length in enumerate([5, 3, 1, 4]):
        path = decoded[row, :length].tolist()
        assert is_legal(path, constraints), [labels[i] for i in path]
        assert not (labels[path[0]].startswith("I-") or labels[path[0]].startswith("E-"))


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
def test_illegal_gold_sequence_has_negligible_probability(scheme):
    labels, constraints = scheme_constraints(scheme)
    crf = make_crf(0, len(labels), constraints)
    emissions, mask, _ = make_batch(0, len(labels), [3])
    illegal = torch.tensor([[labels.index("I-PER"), labels.index("I-LOC"), labels.index("O")]])
    assert not is_legal(illegal[0].tolist(), constraints)
    assert crf.log_likelihood(emissions, illegal, mask).item() < -1000


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
def test_constraints_are_buffers_not_weights(scheme):
    labels, constraints = scheme_constraints(scheme)
    crf = CRF(len(labels), constraints)
    assert set(crf.state_dict()) == {"transitions", "start", "end"}
    assert crf.trans_ok.tolist() == constraints[1]
    assert crf.start_ok.tolist() == constraints[0] and crf.end_ok.tolist() == constraints[2]


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("seed", SEEDS[:4])
@pytest.mark.parametrize("scheme", [None, "iob2", "iobes"])
def test_gradients_flow(seed, scheme):
    if scheme is None:
        num_tags, constraints = 4, None
    else:
        labels, constraints = scheme_constraints(scheme)
        num_tags = len(labels)
    crf = make_crf(seed, num_tags, constraints)
    emissions, mask, _ = make_batch(seed, num_tags, [5, 2, 4])
    tags = crf.decode(torch.randn_like(emissions), mask)  # legal when constrained
    emissions.requires_grad_(True)
    loss = -crf.log_likelihood(emissions, tags, mask).sum()
    loss.backward()
    for name in ("transitions", "start", "end"):
        grad = getattr(crf, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert torch.isfinite(emissions.grad).all()
    assert emissions.grad[~mask].eq(0).all(), "padding gets no gradient"
    if constraints is not None:  # forbidden transitions are constants: no gradient
        assert crf.transitions.grad[~torch.tensor(constraints[1])].eq(0).all()


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_gradient_of_log_partition_is_the_marginals(seed):
    """d log Z / d emissions[t, j] = p(tag t = j): forward-backward and autograd agree."""
    crf = make_crf(seed, 4)
    emissions, mask, _ = make_batch(seed, 4, [5, 3, 1])
    emissions.requires_grad_(True)
    crf._log_partition(emissions, mask).sum().backward()
    torch.testing.assert_close(emissions.grad, crf.marginals(emissions.detach(), mask), atol=ATOL, rtol=0)


def test_gradcheck():
    """Analytic gradients of the log-likelihood (w.r.t. emissions and every parameter)
    match finite differences."""
    crf = make_crf(0, 3)
    emissions, mask, tags = make_batch(0, 3, [4, 2])
    emissions.requires_grad_(True)
    wrapped = _LogLikelihood(crf)
    params = [crf.transitions.detach().clone().requires_grad_(True),
              crf.start.detach().clone().requires_grad_(True),
              crf.end.detach().clone().requires_grad_(True)]

    def log_likelihood(e, transitions, start, end):
        parameters = {"crf.transitions": transitions, "crf.start": start, "crf.end": end}
        return torch.func.functional_call(wrapped, parameters, (e, tags, mask))

    assert torch.autograd.gradcheck(log_likelihood, (emissions, *params))


class _LogLikelihood(torch.nn.Module):
    def __init__(self, crf):
        super().__init__()
        self.crf = crf

    def forward(self, emissions, tags, mask):
        return self.crf.log_likelihood(emissions, tags, mask)


# --------------------------------------------------------------------------- softmax decoder

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_tags, lengths", SHAPES)
def test_softmax_decoder(seed, num_tags, lengths):
    emissions, mask, tags = make_batch(seed, num_tags, lengths)
    decoder = SoftmaxDecoder()
    assert list(decoder.parameters()) == []
    log_likelihood = decoder.log_likelihood(emissions, tags, mask)
    decoded = decoder.decode(emissions, mask)
    marginals = decoder.marginals(emissions, mask)
    assert log_likelihood.shape == (len(lengths),) and decoded.shape == mask.shape
    for row, length in enumerate(lengths):
        expected = sum(
            torch.log(torch.exp(emissions[row, t, tags[row, t]]) / torch.exp(emissions[row, t]).sum())
            for t in range(length)
        )
        assert log_likelihood[row].item() == pytest.approx(float(expected), abs=ATOL)
        assert decoded[row, :length].tolist() == [int(emissions[row, t].argmax()) for t in range(length)]
        assert decoded[row, length:].eq(0).all()
        torch.testing.assert_close(marginals[row, :length], emissions[row, :length].softmax(1), atol=ATOL, rtol=0)
        torch.testing.assert_close(marginals[row, :length].sum(1), torch.ones(length, dtype=torch.float64),
                                   atol=ATOL, rtol=0)
        assert marginals[row, length:].eq(0).all()


def test_softmax_decoder_gradients_flow_to_real_tokens_only():
    emissions, mask, tags = make_batch(0, 4, [4, 2])
    emissions.requires_grad_(True)
    (-SoftmaxDecoder().log_likelihood(emissions, tags, mask).sum()).backward()
    assert torch.isfinite(emissions.grad).all()
    assert emissions.grad[~mask].eq(0).all() and emissions.grad[mask].abs().sum() > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_padded_rows_decode_as_if_cut_to_their_length(seed):
    """Rows shorter than the batch (one alone, or several) decode to their unpadded best path."""
    crf = make_crf(seed, 4)
    for lengths in ([3], [2, 4], [1, 3, 2]):
        emissions, mask, _ = make_batch(seed, 4, lengths)
        padded = torch.cat([emissions, torch.randn(len(lengths), 2, 4, dtype=emissions.dtype) * 5], dim=1)
        padded_mask = torch.cat([mask, torch.zeros(len(lengths), 2, dtype=torch.bool)], dim=1)
        tags = crf.decode(padded, padded_mask)
        for row, length in enumerate(lengths):
            alone = crf.decode(emissions[row : row + 1, :length], mask[row : row + 1, :length])
            assert tags[row, :length].tolist() == alone[0].tolist()
            assert tags[row, length:].eq(0).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ragged", [False, True])
def test_viterbi_in_torch_finds_the_numpy_path_bit_for_bit(monkeypatch, seed, ragged):
    """Full batches run Viterbi's forward pass in torch: the same paths as NumPy's loop,
    ties included (small integer scores make many; both keep the first maximum)."""
    import numpy as np

    from tagger.model import crf as crf_module

    rng = np.random.default_rng(seed)
    size, steps, tags = 64, 12, 17
    emissions = rng.integers(-2, 3, (size, steps, tags)).astype(np.float32)
    lengths = rng.integers(1, steps + 1, size) if ragged else np.full(size, steps)
    trans = rng.integers(-2, 3, (tags, tags)).astype(np.float32)
    trans[rng.random((tags, tags)) < 0.2] = -1e4
    start, end = (rng.integers(-1, 2, tags).astype(np.float32) for _ in range(2))
    called, torch_pass = [], crf_module._best_scores_torch
    monkeypatch.setattr(crf_module, "_best_scores_torch", lambda *a: called.append(1) or torch_pass(*a))
    in_torch = crf_module.viterbi(emissions, lengths, start, trans, end)
    assert called, "a 64-row batch of 17 tags runs the forward pass in torch"
    monkeypatch.setattr(crf_module, "TORCH_VITERBI_ROWS", 10**9)
    in_numpy = crf_module.viterbi(emissions, lengths, start, trans, end)
    assert np.array_equal(in_torch, in_numpy)
    for row, length in enumerate(lengths):
        assert in_torch[row, length:].tolist() == [0] * (steps - length)


def test_marginals_fall_back_to_log_space_when_probabilities_underflow():
    """Tag 0 may not follow itself; the second token's emissions make tag 0 1000 nats likelier
    than the others, so after the first token (all mass on tag 0) every allowed next tag has
    probability exp(-1000): 0 in float64. The log-space recursion still gets it right."""
    from tagger.model.crf import forward_backward, tag_marginals

    num_tags = 3
    trans_ok = [[j != 0 or i != 0 for j in range(num_tags)] for i in range(num_tags)]
    constraints = ([True] * num_tags, trans_ok, [True] * num_tags)
    crf = make_crf(0, num_tags, constraints)
    emissions = torch.zeros(1, 3, num_tags, dtype=torch.float64)
    emissions[0, 0] = torch.tensor([1000.0, 0.0, 0.0])
    emissions[0, 1] = torch.tensor([1000.0, 0.0, 0.0])
    mask = torch.ones(1, 3, dtype=torch.bool)
    start, trans, end = crf._numpy_scores()
    assert forward_backward(emissions.numpy(), mask.sum(1).numpy(), start, trans, end) is None
    marginals = crf.marginals(emissions, mask)
    _, _, expected = brute_force(crf, emissions[0], 3, constraints)
    torch.testing.assert_close(marginals[0], expected, atol=1e-6, rtol=0)
    assert (marginals >= 0).all() and (marginals <= 1).all()
    tags = crf.decode(emissions, mask)
    assert tag_marginals(emissions.numpy(), mask.sum(1).numpy(), start, trans, end, tags.numpy()) is None
    assert torch.equal(crf.tag_marginals(emissions, mask, tags), marginals.gather(2, tags.unsqueeze(2)).squeeze(2))


@pytest.mark.parametrize("seed", SEEDS)
def test_marginals_are_probabilities_in_float32(seed):
    """Scores from a float32 CRF with large emissions never exceed 1 (they did, by up to 5e-4)."""
    torch.manual_seed(seed)
    crf = CRF(9).eval()
    emissions = torch.randn(64, 40, 9) * 30
    mask = torch.arange(40).unsqueeze(0) < torch.randint(1, 41, (64, 1))
    marginals = crf.marginals(emissions, mask)
    assert marginals.dtype == torch.float32
    assert (marginals >= 0).all() and (marginals <= 1).all()
    real = marginals.sum(2)[mask]
    torch.testing.assert_close(real, torch.ones_like(real), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheme", [None, "iob2", "iobes"])
@pytest.mark.parametrize("seed", SEEDS)
def test_tag_marginals_are_the_marginals_of_the_given_tags(scheme, seed):
    """The confidences of a path: each given tag's marginal, by enumeration and bit for bit
    what ``marginals(...).gather`` gives, on ragged rows (the decoded path, and random tags,
    forbidden ones included), in float64 and float32; 0 at padding; the softmax decoder's
    likewise (the log-space fallback: the test below)."""
    labels, constraints = scheme_constraints(scheme) if scheme else (range(4), None)
    crf = make_crf(seed, len(labels), constraints)
    lengths = [4, 1, 3, 2, 4]
    emissions, mask, random_tags = make_batch(seed, len(labels), lengths)
    for tags in (crf.decode(emissions, mask), random_tags):
        probs = crf.tag_marginals(emissions, mask, tags)
        assert probs.shape == tags.shape and probs.dtype == torch.float64
        assert torch.equal(probs, crf.marginals(emissions, mask).gather(2, tags.unsqueeze(2)).squeeze(2))
        for row, length in enumerate(lengths):
            expected = brute_force(crf, emissions[row], length, constraints)[2]
            torch.testing.assert_close(probs[row, :length], expected[torch.arange(length), tags[row, :length]],
                                       atol=ATOL, rtol=0)
            assert probs[row, length:].eq(0).all()
        single = crf.float().tag_marginals(emissions.float(), mask, tags)
        assert single.dtype == torch.float32
        assert torch.equal(single, crf.marginals(emissions.float(), mask).gather(2, tags.unsqueeze(2)).squeeze(2))
        crf.double()
    softmax = SoftmaxDecoder()
    torch.testing.assert_close(softmax.tag_marginals(emissions, mask, random_tags),
                               (emissions.softmax(2).gather(2, random_tags.unsqueeze(2)).squeeze(2) * mask), atol=0, rtol=0)


def test_whatever_sits_at_padding_the_marginals_there_are_zero():
    """-inf or NaN scores past a row's end (a network never gives them, a caller might) leave
    0 at padding and the real tokens' values unchanged, in every marginal the CRF returns; the
    confidences of a path come back as one contiguous (B, T) tensor."""
    crf = make_crf(0, 4)
    lengths = [5, 2, 3]
    emissions, mask, tags = make_batch(0, 4, lengths)
    clean = (crf.marginals(emissions, mask), crf.pair_marginals(emissions, mask), crf.tag_marginals(emissions, mask, tags))
    for fill in (float("-inf"), float("nan")):
        dirty = emissions.masked_fill(~mask.unsqueeze(2), fill)
        marginals, (unary, pairs), chosen = (crf.marginals(dirty, mask), crf.pair_marginals(dirty, mask),
                                             crf.tag_marginals(dirty, mask, tags))
        for got, want in ((marginals, clean[0]), (unary, clean[1][0]), (pairs, clean[1][1]), (chosen, clean[2])):
            assert torch.equal(got, want)
        assert chosen.is_contiguous()


def pair_marginals_by_enumeration(crf: CRF, emissions: torch.Tensor, length: int, constraints=None):
    """(length - 1, L, L) p(tag t = i, tag t + 1 = j) and the (N,) sequence probabilities."""
    num_tags = emissions.size(-1)
    sequences = all_sequences(num_tags, length, constraints)
    probabilities = torch.softmax(path_scores(crf, emissions[:length], sequences), 0)
    pairs = torch.zeros(max(length - 1, 0), num_tags, num_tags, dtype=torch.float64)
    for t in range(length - 1):
        pairs[t].index_put_((sequences[:, t], sequences[:, t + 1]), probabilities, accumulate=True)
    return pairs, sequences, probabilities


@pytest.mark.parametrize("seed", SEEDS[:4])
@pytest.mark.parametrize("num_tags, lengths", SHAPES)
def test_pair_marginals_match_enumeration(seed, num_tags, lengths):
    crf = make_crf(seed, num_tags)
    emissions, mask, _ = make_batch(seed, num_tags, lengths)
    unary, pairwise = crf.pair_marginals(emissions, mask)
    assert pairwise.shape == (len(lengths), max(lengths) - 1, num_tags, num_tags)
    for row, length in enumerate(lengths):
        expected, _, _ = pair_marginals_by_enumeration(crf, emissions[row], length)
        torch.testing.assert_close(pairwise[row, : length - 1], expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(unary[row, :length], brute_force(crf, emissions[row], length)[2], atol=ATOL, rtol=0)
        assert pairwise[row, max(length - 1, 0):].eq(0).all()
        if length > 1:  # pairs sum to the unary marginals on either side
            torch.testing.assert_close(pairwise[row, : length - 1].sum(2), unary[row, : length - 1], atol=ATOL, rtol=0)
            torch.testing.assert_close(pairwise[row, : length - 1].sum(1), unary[row, 1:length], atol=ATOL, rtol=0)


def test_pair_marginals_under_constraints_and_underflow_fall_back_exactly():
    labels, constraints = scheme_constraints("iob2")
    crf = make_crf(3, len(labels), constraints)
    emissions, mask, _ = make_batch(3, len(labels), [4, 2, 1])
    emissions = emissions * 400  # rows hundreds of nats apart: the scaled pass underflows, log space does not
    unary, pairwise = crf.pair_marginals(emissions, mask)
    for row, length in enumerate([4, 2, 1]):
        expected, _, _ = pair_marginals_by_enumeration(crf, emissions[row], length, constraints)
        torch.testing.assert_close(pairwise[row, : length - 1], expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(unary[row, :length], brute_force(crf, emissions[row], length, constraints)[2],
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", SEEDS[:4])
@pytest.mark.parametrize("num_tags, lengths", SHAPES)
def test_distillation_loss_is_the_cross_entropy_against_the_teacher(seed, num_tags, lengths):
    """-sum_y p_teacher(y) log p_student(y), by enumeration, for a teacher CRF with other
    scores and other emissions than the student's."""
    teacher, student = make_crf(seed, num_tags), make_crf(seed + 100, num_tags)
    teacher_emissions, mask, _ = make_batch(seed, num_tags, lengths)
    student_emissions, _, _ = make_batch(seed + 50, num_tags, lengths)
    unary, pairwise = teacher.pair_marginals(teacher_emissions, mask)
    loss = student.distillation_loss(student_emissions, mask, unary, pairwise.sum(1))
    for row, length in enumerate(lengths):
        _, sequences, p_teacher = pair_marginals_by_enumeration(teacher, teacher_emissions[row], length)
        log_p_student = torch.log_softmax(path_scores(student, student_emissions[row, :length], sequences), 0)
        torch.testing.assert_close(loss[row], -(p_teacher * log_p_student).sum(), atol=1e-7, rtol=1e-9)


@pytest.mark.parametrize("temperature", [0.5, 2.0, 4.0])
def test_temperature_softens_both_sides_of_the_distillation_loss(temperature):
    """At temperature T the teacher's marginals are those of p(y)^(1/T), renormalized, and the
    loss is the cross-entropy between both CRFs' distributions with every score divided by T."""
    lengths = [5, 3, 1]
    teacher, student = make_crf(7, 4), make_crf(8, 4)
    teacher_emissions, mask, _ = make_batch(7, 4, lengths)
    student_emissions, _, _ = make_batch(9, 4, lengths)
    unary, pairwise = teacher.pair_marginals(teacher_emissions, mask, temperature=temperature)
    loss = student.distillation_loss(student_emissions, mask, unary, pairwise.sum(1), temperature=temperature)
    for row, length in enumerate(lengths):
        sequences = all_sequences(4, length)
        p_teacher = torch.softmax(path_scores(teacher, teacher_emissions[row, :length], sequences) / temperature, 0)
        expected_unary = torch.zeros(length, 4, dtype=torch.float64)
        for t in range(length):
            expected_unary[t].index_add_(0, sequences[:, t], p_teacher)
        torch.testing.assert_close(unary[row, :length], expected_unary, atol=ATOL, rtol=0)
        log_p_student = torch.log_softmax(path_scores(student, student_emissions[row, :length], sequences) / temperature, 0)
        torch.testing.assert_close(loss[row], -(p_teacher * log_p_student).sum(), atol=1e-7, rtol=1e-9)


def test_distillation_loss_is_stationary_at_the_teacher():
    """A student equal to its teacher sits at the minimum: zero gradient for every score."""
    crf = make_crf(5, 4)
    emissions, mask, _ = make_batch(5, 4, [5, 3, 1])
    emissions.requires_grad_(True)
    unary, pairwise = crf.pair_marginals(emissions.detach(), mask)
    crf.distillation_loss(emissions, mask, unary, pairwise.sum(1)).sum().backward()
    for grad in (emissions.grad, crf.transitions.grad, crf.start.grad, crf.end.grad):
        torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-9, rtol=0)
