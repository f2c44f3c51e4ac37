"""Linear-chain conditional random field over tag ids.

Two verbs, the log-likelihood of gold tags and the best path, plus forward-backward
marginals for confidences. It knows tag ids only; which transitions are legal (IOB2,
IOBES) is computed outside from the label list (:func:`tagger.data.schemes.allowed_transitions`)
and passed in. Shapes: ``B`` batch, ``T`` time, ``L`` labels. Every sequence has at least
one token and its mask is a prefix of ones (right padding).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import numpy as np
import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor, nn

# Score given to forbidden transitions: finite, so logsumexp never meets (-inf) - (-inf).
FORBIDDEN = -1e4


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` for tag ``j`` following tag ``i``, plus
    start and end scores, with optional hard constraints.

    Args:
        num_tags: ``L``.
        constraints: ``(start, transitions, end)`` booleans from
            :func:`tagger.data.schemes.allowed_transitions`; None allows everything.
    """

    def __init__(self, num_tags: int, constraints: tuple[Sequence[bool], Sequence[Sequence[bool]], Sequence[bool]] | None = None):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        if constraints is None:
            start_ok = torch.ones(num_tags, dtype=torch.bool)
            trans_ok = torch.ones(num_tags, num_tags, dtype=torch.bool)
            end_ok = torch.ones(num_tags, dtype=torch.bool)
        else:
            start_ok, trans_ok, end_ok = (torch.tensor(c, dtype=torch.bool) for c in constraints)
        # Constraints are a function of the label list, rebuilt on load: not saved weights.
        self.register_buffer("start_ok", start_ok, persistent=False)
        self.register_buffer("trans_ok", trans_ok, persistent=False)
        self.register_buffer("end_ok", end_ok, persistent=False)

    def _scores(self) -> tuple[Tensor, Tensor, Tensor]:
        start = self.start.masked_fill(~self.start_ok, FORBIDDEN)  # (L,)
        trans = self.transitions.masked_fill(~self.trans_ok, FORBIDDEN)  # (L, L)
        end = self.end.masked_fill(~self.end_ok, FORBIDDEN)  # (L,)
        return start, trans, end

    def _numpy_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_scores` as arrays, for decoding; kept in eval mode until a parameter or
        constraint changes (in place or replaced)."""
        tensors = (self.start, self.transitions, self.end, self.start_ok, self.trans_ok, self.end_ok)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self.training or getattr(self, "_cached", (None,))[0] != key:
            self._cached = (key, tuple(x.detach().cpu().numpy().copy() for x in self._scores()))
        return self._cached[1]

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Log-probability of the gold tags.

        Args:
            emissions: (B, T, L) scores.
            tags: (B, T) gold tag ids (anything at padding).
            mask: (B, T) bool, True on real tokens.

        Returns:
            (B,) log p(tags | emissions).
        """
        return self._gold_score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def _gold_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        start, trans, end = self._scores()
        tags = tags.masked_fill(~mask, 0)
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        score = start[tags[:, 0]] + (emit * maskf).sum(1)  # (B,)
        score = score + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)  # (B,)
        return score + end[last]

    def _forward_alphas(self, emissions: Tensor, mask: Tensor, scores: tuple[Tensor, Tensor, Tensor] | None = None
                        ) -> list[Tensor]:
        """alpha[t][b, j]: log-sum of the scores of all prefixes ending in tag j at t
        (``scores``: start, transitions, end to use instead of :meth:`_scores`)."""
        start, trans, _ = scores or self._scores()
        alpha = start + emissions[:, 0]  # (B, L)
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emissions[:, t]  # (B, L)
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
            alphas.append(alpha)
        return alphas

    def _log_partition(self, emissions: Tensor, mask: Tensor,
                       scores: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        scores = scores or self._scores()
        alpha = self._forward_alphas(emissions, mask, scores)[-1]  # padding keeps each row's last alpha
        return torch.logsumexp(alpha + scores[2], dim=1)  # (B,)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Viterbi: the highest-scoring tag sequence of each row.

        Runs in NumPy: the recursion is a loop over time steps of small (B, L, L) operations,
        where a NumPy call costs a fraction of a torch one (most of single-sentence latency);
        on full batches the forward recursion runs in torch instead (:func:`viterbi`).

        Returns:
            (B, T) tag ids, 0 at padding.
        """
        start, trans, end = self._numpy_scores()
        tags = viterbi(emissions.detach().cpu().numpy(), mask.sum(1).cpu().numpy(), start, trans, end)
        return torch.from_numpy(tags).to(emissions.device)

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Forward-backward: p(tag at t = j | emissions) for every t and j.

        Runs in NumPy (float64) in probability space, each step rescaled to sum to 1, and
        each token's row normalized at the end: a probability is then never above 1 by a
        rounding error (the log-space recursion in float32 gave up to 1.0005), and a step
        is one small matrix product instead of a log-sum-exp over (B, L, L). Should a row
        underflow (emissions hundreds of nats apart), the batch is recomputed in log space.

        Returns:
            (B, T, L) probabilities in [0, 1], rows summing to 1 on real tokens, 0 at padding.
        """
        return self._marginals(emissions, mask, pairs=False).to(emissions.dtype)

    @torch.no_grad()
    def tag_marginals(self, emissions: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        """The marginal of each given tag, ``marginals(emissions, mask).gather(2, tags[..., None])``
        (the confidences of a decoded path), without normalizing every other tag's: the same
        numbers, 1.2x faster on tagging batches. (B, T), 0 at padding."""
        start, trans, end = self._numpy_scores()
        with _one_blas_thread():
            probs = tag_marginals(emissions.detach().cpu().numpy(), mask.sum(1).cpu().numpy(), start, trans, end,
                                  tags.cpu().numpy())
        if probs is None:
            every = self._log_marginals(emissions.detach().double(), mask)
            return every.gather(2, tags.unsqueeze(2)).squeeze(2).to(emissions.dtype)
        return torch.from_numpy(probs).to(device=emissions.device, dtype=emissions.dtype)

    @torch.no_grad()
    def pair_marginals(self, emissions: Tensor, mask: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """What a student learns from this CRF as a teacher (:meth:`distillation_loss`): the
        marginals (B, T, L) and the marginals of adjacent tag pairs (B, T - 1, L, L),
        p(tag t = i, tag t + 1 = j), 0 past each row's end; float64. With ``temperature``
        above 1, of the softened distribution p(y)^(1/temperature) (every score divided by it)."""
        return self._marginals(emissions, mask, pairs=True, temperature=temperature)

    def _marginals(self, emissions: Tensor, mask: Tensor, pairs: bool, temperature: float = 1.0):
        """:func:`forward_backward` on one BLAS thread; the log-space recursion if it underflows."""
        start, trans, end = self._numpy_scores()
        values = emissions.detach().cpu().numpy()
        if temperature != 1.0:
            start, trans, end, values = (x / temperature for x in (start, trans, end, values))
        with _one_blas_thread():
            result = forward_backward(values, mask.sum(1).cpu().numpy(), start, trans, end, pairs=pairs)
        if result is None:
            return self._log_marginals(emissions.detach().double() / temperature, mask, pairs=pairs,
                                       temperature=temperature)
        tensors = tuple(torch.from_numpy(x).to(emissions.device) for x in (result if pairs else (result,)))
        return tensors if pairs else tensors[0]

    def distillation_loss(self, emissions: Tensor, mask: Tensor, unary: Tensor, transitions: Tensor,
                          temperature: float = 1.0) -> Tensor:
        """Cross-entropy of this CRF's distribution over tag sequences against a teacher's,
        per row: -E_teacher[log p(y | emissions)] = log Z - E_teacher[score(y)].

        A linear-chain score is a sum of start, emission, transition and end terms, so its
        expectation under the teacher needs only the teacher's marginals (``unary``, (B, T, L))
        and its expected transition counts (``transitions``, (B, L, L): the pair marginals of
        :meth:`pair_marginals` summed over positions, since one transition matrix scores every
        step): the objective is exact, not a per-token approximation (Wang et al. 2020,
        "Structural Knowledge Distillation"). Its minimum over this CRF's scores is at the
        teacher's distribution. With ``temperature``, every score of this CRF is divided by it
        (the teacher's marginals should come from the same temperature). Returns (B,).
        """
        start, trans, end = self._scores()
        if temperature != 1.0:
            start, trans, end, emissions = (x / temperature for x in (start, trans, end, emissions))
        unary, transitions = unary.to(emissions.dtype), transitions.to(emissions.dtype)
        maskf = mask.to(emissions.dtype)
        expected = (unary * emissions).sum(2).mul(maskf).sum(1) + (unary[:, 0] * start).sum(1)
        last = (mask.sum(1) - 1).view(-1, 1, 1).expand(-1, 1, unary.size(2))
        expected = expected + (unary.gather(1, last).squeeze(1) * end).sum(1)
        safe = torch.where(self.trans_ok, trans, torch.zeros_like(trans))  # a teacher's forbidden pairs are 0
        expected = expected + (transitions * safe).sum((1, 2))
        return self._log_partition(emissions, mask, (start, trans, end)) - expected

    def _log_marginals(self, emissions: Tensor, mask: Tensor, pairs: bool = False, temperature: float = 1.0):
        """Forward-backward in log space (slower; the fallback of :meth:`marginals`);
        ``emissions`` already divided by ``temperature``, the CRF's scores divided here."""
        scores = tuple(s.to(emissions.dtype) / temperature for s in self._scores())
        _, trans, end = scores
        alphas = torch.stack(self._forward_alphas(emissions, mask, scores), dim=1)  # (B, T, L)
        beta = end.expand(emissions.size(0), -1)  # (B, L)
        betas = [beta]
        for t in range(emissions.size(1) - 2, -1, -1):
            step = torch.logsumexp(trans + (emissions[:, t + 1] + beta).unsqueeze(1), dim=2)  # (B, L)
            beta = torch.where(mask[:, t + 1 : t + 2], step, end.expand_as(step))
            betas.append(beta)
        betas = torch.stack(betas[::-1], dim=1)  # (B, T, L)
        probs = torch.softmax(alphas + betas, dim=2)  # normalized per token: exactly what log Z does
        probs = probs * mask.unsqueeze(2).to(probs.dtype)
        if not pairs:
            return probs
        scores = alphas[:, :-1, :, None] + trans + (emissions[:, 1:] + betas[:, 1:])[:, :, None, :]  # (B, T-1, L, L)
        joint = torch.softmax(scores.flatten(2), dim=2).view_as(scores)
        return probs, joint * mask[:, 1:, None, None].to(joint.dtype)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # inspects the loaded libraries: once


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """NumPy's BLAS on the calling thread only, for the length of a call.

    Its matrix products here are small, and OpenBLAS would wake its own thread pool for each
    one; those threads then spin and take cores from torch's next LSTM call: scores cost
    50% more time with them (tagging the EWT test texts with en-pos), 8% without.
    """
    return _blas().limit(limits=1, user_api="blas")


def forward_backward(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray,
                     end: np.ndarray, pairs: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
    """Marginals p(tag at t = j) of a linear-chain CRF, (B, T, L) float64, 0 at padding; None
    if a step underflowed (every tag's probability 0 in float64), for the caller to fall back.
    With ``pairs``, also p(tag at t = i, tag at t + 1 = j), (B, T - 1, L, L), 0 past each row's end.
    """
    emit, step_ok, alphas, betas = _scaled_passes(emissions, lengths, start, trans, end)
    probs = alphas * betas  # (T, B, L)
    totals = probs.sum(2, keepdims=True)
    real = (np.arange(emissions.shape[1])[:, None] < np.asarray(lengths)[None, :])  # (T, B)
    if not (totals[real] > 0).all() or not np.isfinite(totals[real]).all():
        return None
    probs /= np.where(totals > 0, totals, 1.0)
    np.copyto(probs, 0.0, where=~real[:, :, None])  # whatever the padding gave (NaN from -inf scores too)
    np.clip(probs, 0.0, 1.0, out=probs)
    probs = np.ascontiguousarray(probs.transpose(1, 0, 2))
    if not pairs:
        return probs
    # p(i at t, j at t+1) ∝ alpha_t(i) A(i, j) emit_{t+1}(j) beta_{t+1}(j), normalized per step
    joint = alphas[:-1, :, :, None] * step_ok * (emit[1:] * betas[1:])[:, :, None, :]  # (T-1, B, L, L)
    norms = joint.sum((2, 3), keepdims=True)
    inside = real[1:]  # step t -> t+1 inside the row
    if not (norms[inside] > 0).all():
        return None
    joint /= np.where(norms > 0, norms, 1.0)
    np.copyto(joint, 0.0, where=~inside[:, :, None, None])
    np.clip(joint, 0.0, 1.0, out=joint)
    return probs, np.ascontiguousarray(joint.transpose(1, 0, 2, 3))


def tag_marginals(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray,
                  end: np.ndarray, tags: np.ndarray) -> np.ndarray | None:
    """p(tag at t = tags[b, t]) of a linear-chain CRF, (B, T) float64, 0 at padding: what
    ``forward_backward(...)`` gives at ``tags``, without normalizing every tag's marginal
    (a token's normalizer is one dot product of its alpha and beta). None if a step underflowed.
    """
    _, _, alphas, betas = _scaled_passes(emissions, lengths, start, trans, end)
    index = np.ascontiguousarray(np.asarray(tags).T)[:, :, None]  # (T, B, 1)
    chosen = np.take_along_axis(alphas, index, 2)[:, :, 0] * np.take_along_axis(betas, index, 2)[:, :, 0]
    totals = (alphas * betas).sum(2)  # (T, B): summed as forward_backward sums them, so the same numbers
    real = np.arange(emissions.shape[1])[:, None] < np.asarray(lengths)[None, :]
    if not (totals[real] > 0).all() or not np.isfinite(totals[real]).all():
        return None
    probs = np.zeros(totals.shape)
    np.divide(chosen, totals, out=probs, where=real)
    np.clip(probs, 0.0, 1.0, out=probs)
    return np.ascontiguousarray(probs.T)


@np.errstate(invalid="ignore", over="ignore")  # at padding, -inf or NaN scores are a caller's: not warned of
def _scaled_passes(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray,
                   end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scaled forward-backward (Rabiner 1989), time-major: exp(emissions) less each token's
    maximum (T, B, L), exp(transitions) (L, L), and alpha and beta (T, B, L), each step's
    rescaled to sum to 1, so only their ratios matter and exponentials of score differences
    stay in range. Past a row's end they hold whatever the padding's scores give: callers
    keep only real tokens' values.

    Each step is a few NumPy calls writing into the step's slice in place: the calls, not the
    arithmetic, are most of the time on tagging batches.
    """
    steps = emissions.shape[1]
    emit = np.array(emissions.transpose(1, 0, 2), dtype=np.float64, order="C")  # (T, B, L), a copy: worked in place
    emit -= emit.max(axis=2, keepdims=True)
    np.exp(emit, out=emit)  # max 1
    step_ok = np.exp(trans.astype(np.float64) - trans.max())  # [i, j]; forbidden: 0
    first = np.exp(start.astype(np.float64) - start.max())
    last = np.exp(end.astype(np.float64) - end.max())
    alphas = np.empty_like(emit)
    np.multiply(first, emit[0], out=alphas[0])
    for t in range(steps):
        if t:
            np.matmul(alphas[t - 1], step_ok, out=alphas[t])
            alphas[t] *= emit[t]
        total = alphas[t].sum(1, keepdims=True)
        np.divide(alphas[t], total, out=alphas[t], where=total > 0)  # 0 everywhere: left 0
    betas = np.empty_like(emit)
    betas[-1] = last
    back = np.ascontiguousarray(step_ok.T)
    carried = np.empty_like(emit[0])
    ends = np.asarray(lengths) - 1
    finals = {int(t): np.flatnonzero(ends == t) for t in np.unique(ends) if t < steps - 1}
    for t in range(steps - 2, -1, -1):
        np.multiply(emit[t + 1], betas[t + 1], out=carried)
        np.matmul(carried, back, out=betas[t])
        total = betas[t].sum(1, keepdims=True)
        np.divide(betas[t], total, out=betas[t], where=total > 0)
        if t in finals:  # rows whose last token is t
            betas[t, finals[t]] = last
    return emit, step_ok, alphas, betas


def viterbi(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray,
            end: np.ndarray) -> np.ndarray:
    """Best paths for (B, T, L) ``emissions`` with rows of ``lengths`` (each >= 1); (B, T)
    int64 tag ids, 0 at padding.

    The forward pass keeps only the best score of each tag at each step (one reduction over
    (B, L, L) a step, not two); the way back recomputes, for the one tag chosen at each
    step, which previous tag gave its score: the same sums, so the same first-maximum ties
    as keeping back-pointers. 1.5x faster on full batches than keeping them. The forward
    pass runs in torch on batches of ``TORCH_VITERBI_ROWS`` rows and ``TORCH_VITERBI_ELEMENTS``
    (B, L, L) scores or more (:func:`_best_scores_torch`: the same scores bit for bit).
    """
    size, steps, labels = emissions.shape
    incoming = np.ascontiguousarray(trans.T)  # [j, i]: reduce over the contiguous last axis
    history = np.empty((steps, size, labels), dtype=emissions.dtype)
    history[0] = score = start + emissions[:, 0]  # (B, L)
    ragged = bool((lengths < steps).any())  # no padding (one sentence, or equal lengths): no masking
    if (size >= TORCH_VITERBI_ROWS and size * labels * labels >= TORCH_VITERBI_ELEMENTS
            and emissions.dtype == incoming.dtype == history.dtype):
        _best_scores_torch(emissions, lengths, incoming, history, ragged)
        score = history[-1]
    else:
        for t in range(1, steps):
            step = (score[:, None, :] + incoming).max(axis=2) + emissions[:, t]
            # rows past their end keep their score
            history[t] = score = np.where((t < lengths)[:, None], step, score) if ragged else step
    tags = np.zeros((size, steps), dtype=np.int64)
    if size == 1:  # scalars: half the NumPy calls of the batched way back
        current = int((score[0] + end).argmax())
        tags[0, lengths[0] - 1] = current
        for t in range(int(lengths[0]) - 1, 0, -1):
            current = int((history[t - 1, 0] + trans[:, current]).argmax())
            tags[0, t - 1] = current
        return tags
    last = np.asarray(lengths) - 1
    current = (score + end).argmax(axis=1)  # (B,) tag at each row's last token
    tags[np.arange(size), last] = current
    for t in range(steps - 1, 0, -1):
        real = t <= last  # rows whose tag at t is known
        current = np.where(real, (history[t - 1] + trans[:, current].T).argmax(axis=1), current)
        tags[real, t - 1] = current[real]
    return tags


# Viterbi's forward pass runs in torch from this batch size and (B, L, L) size up: per call
# torch costs more than NumPy (8 against 19 us a step for one sentence), but on a full batch
# its kernels are 1.3-2x faster (2.2x on two threads) and release the GIL. Measured on this
# project's 2-core machine: NumPy faster up to 8 rows of 50 tags or 16 rows of 17.
TORCH_VITERBI_ROWS = 16
TORCH_VITERBI_ELEMENTS = 8192


def _best_scores_torch(emissions: np.ndarray, lengths: np.ndarray, incoming: np.ndarray, history: np.ndarray,
                       ragged: bool) -> None:
    """Viterbi's forward recursion of :func:`viterbi` in torch, written into ``history`` (whose
    step 0 is set): the same float operations in the same order, so the same scores bit for
    bit, and so the same path."""
    scores = torch.from_numpy(history)  # shares memory: what is written here is history
    emitted, into = torch.from_numpy(emissions), torch.from_numpy(incoming)
    ended = torch.from_numpy(np.asarray(lengths))[:, None]
    score = scores[0]
    for t in range(1, emissions.shape[1]):
        step = (score.unsqueeze(1) + into).amax(dim=2) + emitted[:, t]
        score = torch.where(t < ended, step, score, out=scores[t]) if ragged else scores[t].copy_(step)


class SoftmaxDecoder(nn.Module):
    """Independent per-token decisions, with the CRF's interface (no parameters)."""

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        logp = emissions.log_softmax(dim=2).gather(2, tags.masked_fill(~mask, 0).unsqueeze(2)).squeeze(2)
        return (logp * mask.to(logp.dtype)).sum(1)  # (B,)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        return emissions.argmax(dim=2).masked_fill(~mask, 0)  # (B, T)

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        return emissions.softmax(dim=2) * mask.unsqueeze(2).to(emissions.dtype)  # (B, T, L)

    @torch.no_grad()
    def tag_marginals(self, emissions: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        return self.marginals(emissions, mask).gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
