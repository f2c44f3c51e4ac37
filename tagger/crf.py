"""Linear-chain conditional random field over tag ids.

Two verbs, the log-likelihood of gold tags and the best path, plus forward-backward
marginals for confidences. It knows tag ids only; which transitions are legal (IOB2,
IOBES) is computed outside from the label list (:func:`tagger.schemes.allowed_transitions`)
and passed in. Shapes: ``B`` batch, ``T`` time, ``L`` labels. Every sequence has at least
one token and its mask is a prefix of ones (right padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

# Score given to forbidden transitions: finite, so logsumexp never meets (-inf) - (-inf).
FORBIDDEN = -1e4


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` for tag ``j`` following tag ``i``, plus
    start and end scores, with optional hard constraints.

    Args:
        num_tags: ``L``.
        constraints: ``(start, transitions, end)`` booleans from
            :func:`tagger.schemes.allowed_transitions`; None allows everything.
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

    def _forward_alphas(self, emissions: Tensor, mask: Tensor) -> list[Tensor]:
        """alpha[t][b, j]: log-sum of the scores of all prefixes ending in tag j at t."""
        start, trans, _ = self._scores()
        alpha = start + emissions[:, 0]  # (B, L)
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emissions[:, t]  # (B, L)
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
            alphas.append(alpha)
        return alphas

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        alpha = self._forward_alphas(emissions, mask)[-1]  # padding keeps each row's last alpha
        return torch.logsumexp(alpha + self._scores()[2], dim=1)  # (B,)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Viterbi: the highest-scoring tag sequence of each row.

        Runs off torch: compiled by Numba when it is installed (the ``fast`` extra), else in
        NumPy, where the recursion is a loop over time steps of small (B, L, L) operations
        and a NumPy call costs a fraction of a torch one. Same tags either way.

        Returns:
            (B, T) tag ids, 0 at padding.
        """
        start, trans, end = self._numpy_scores()
        tags = best_viterbi()(emissions.detach().cpu().numpy(), mask.sum(1).cpu().numpy(), start, trans, end)
        return torch.from_numpy(tags).to(emissions.device)

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Forward-backward: p(tag at t = j | emissions) for every t and j.

        Returns:
            (B, T, L) probabilities, rows summing to 1 on real tokens, 0 at padding.
        """
        _, trans, end = self._scores()
        alphas = torch.stack(self._forward_alphas(emissions, mask), dim=1)  # (B, T, L)
        beta = end.expand(emissions.size(0), -1)  # (B, L)
        betas = [beta]
        for t in range(emissions.size(1) - 2, -1, -1):
            step = torch.logsumexp(trans + (emissions[:, t + 1] + beta).unsqueeze(1), dim=2)  # (B, L)
            beta = torch.where(mask[:, t + 1 : t + 2], step, end.expand_as(step))
            betas.append(beta)
        betas = torch.stack(betas[::-1], dim=1)  # (B, T, L)
        log_z = torch.logsumexp(alphas[:, -1] + end, dim=1)  # (B,)
        probs = torch.exp(alphas + betas - log_z[:, None, None])
        return probs * mask.unsqueeze(2).to(probs.dtype)


def viterbi(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray,
            end: np.ndarray) -> np.ndarray:
    """Best paths for (B, T, L) ``emissions`` with rows of ``lengths`` (each >= 1); (B, T)
    int64 tag ids, 0 at padding. Rows past their end keep their score unchanged."""
    size, steps, _ = emissions.shape
    score = start + emissions[:, 0]  # (B, L)
    incoming = np.ascontiguousarray(trans.T)  # [j, i]: reduce over the contiguous last axis
    history = np.zeros((max(steps - 1, 0), size, emissions.shape[2]), dtype=np.int64)
    ragged = bool((lengths < steps).any())  # no padding (one sentence, or equal lengths): no masking
    for t in range(1, steps):
        candidates = score[:, None, :] + incoming  # (B, L, L_prev)
        best = candidates.argmax(axis=2)  # (B, L)
        history[t - 1] = best
        step = candidates.max(axis=2) + emissions[:, t]
        score = np.where((t < lengths)[:, None], step, score) if ragged else step
    current = (score + end).argmax(axis=1)  # (B,) tag at each row's last token
    tags = np.zeros((size, steps), dtype=np.int64)
    rows = np.arange(size)
    for t in range(steps - 1, 0, -1):
        if ragged:
            real = t < lengths
            tags[:, t] = np.where(real, current, 0)
            current = np.where(real, history[t - 1][rows, current], current)
        else:
            tags[:, t] = current
            current = history[t - 1][rows, current]
    tags[:, 0] = current
    return tags


def _viterbi_loops(emissions, lengths, start, trans, end):  # pragma: no cover - run compiled
    """:func:`viterbi` as plain loops, for Numba: the same sums and first-maximum ties, so the
    same tags; about 8x faster (one sentence of 20 tokens and 49 tags: 50 us against 420)."""
    size, steps, labels = emissions.shape
    tags = np.zeros((size, steps), dtype=np.int64)
    history = np.zeros((steps, labels), dtype=np.int64)
    score = np.empty(labels, dtype=emissions.dtype)
    step = np.empty(labels, dtype=emissions.dtype)
    for row in range(size):
        length = lengths[row]
        if length <= 0:
            continue
        for j in range(labels):
            score[j] = start[j] + emissions[row, 0, j]
        for t in range(1, length):
            for j in range(labels):
                best, value = 0, score[0] + trans[0, j]
                for i in range(1, labels):
                    candidate = score[i] + trans[i, j]
                    if candidate > value:
                        best, value = i, candidate
                step[j] = value + emissions[row, t, j]
                history[t, j] = best
            score[:] = step
        current, value = 0, score[0] + end[0]
        for j in range(1, labels):
            if score[j] + end[j] > value:
                current, value = j, score[j] + end[j]
        tags[row, length - 1] = current
        for t in range(length - 1, 0, -1):
            current = history[t, current]
            tags[row, t - 1] = current
    return tags


_best: list = []


def best_viterbi():
    """The fastest Viterbi here: :func:`_viterbi_loops` compiled by Numba (``nogil``, so
    server threads decode in parallel; compiled once per process, cached on disk where Numba
    can write), else :func:`viterbi`."""
    if not _best:
        _best.append(_compiled() or viterbi)
    return _best[0]


def _compiled():
    try:
        import numba
    except ImportError:
        return None
    for cache in (True, False):  # no writable cache directory: compile in memory
        try:
            kernel = numba.njit(cache=cache, nogil=True)(_viterbi_loops)
            one = np.zeros((1, 2, 2), dtype=np.float32)
            kernel(one, np.array([2]), one[0, 0], one[0], one[0, 0])  # compiles now, for float32
            return kernel
        except Exception:  # cannot compile here: NumPy gives the same tags
            continue
    return None


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
