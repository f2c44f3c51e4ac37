"""Linear-chain conditional random field over tag ids.

Two verbs, the log-likelihood of gold tags and the best path, plus forward-backward
marginals for confidences. It knows tag ids only; which transitions are legal (IOB2,
IOBES) is computed outside from the label list (:func:`tagger.schemes.allowed_transitions`)
and passed in. Shapes: ``B`` batch, ``T`` time, ``L`` labels. Every sequence has at least
one token and its mask is a prefix of ones (right padding).
"""

from __future__ import annotations

from collections.abc import Sequence

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

        Returns:
            (B, T) tag ids, 0 at padding.
        """
        start, trans, end = self._scores()
        score = start + emissions[:, 0]  # (B, L)
        history = []
        for t in range(1, emissions.size(1)):
            best, index = (score.unsqueeze(2) + trans).max(dim=1)  # (B, L) each
            score = torch.where(mask[:, t : t + 1], best + emissions[:, t], score)
            history.append(index)
        current = (score + end).argmax(dim=1)  # (B,) tag at each row's last token
        tags = torch.zeros_like(mask, dtype=torch.long)
        for t in range(emissions.size(1) - 1, 0, -1):
            real = mask[:, t]
            tags[:, t] = torch.where(real, current, 0)
            previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(real, previous, current)
        tags[:, 0] = current
        return tags

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
