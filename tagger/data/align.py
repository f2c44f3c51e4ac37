"""Joining corpora that annotate the same sentences (EWT's POS and Universal NER's entities)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tagger.data.batching import Example
from tagger.data.corpus import Sentence, document_ids


@dataclass(frozen=True)
class Alignment:
    """Examples carrying every task's labels where the corpora agree.

    Attributes:
        examples: one per sentence of the first corpus, plus the unmatched sentences of the
            others; a task is present only where that corpus labels the sentence.
        aligned: sentences found in every corpus with the same id and the same tokens.
        token_mismatch: same id, different tokens (kept apart, each with its own labels).
        unmatched: sentences of some corpus with no partner by id.

    An example's ``document`` comes from the first corpus's ``newdoc`` marks.
    """

    examples: list[Example]
    aligned: int
    token_mismatch: int
    unmatched: int


def align(corpora: Mapping[str, Sequence[Sentence]]) -> Alignment:
    """Merge task -> sentences by ``sent_id`` and tokens, keeping every sentence once."""
    tasks = list(corpora)
    by_id = {task: {s.sent_id: s for s in corpora[task] if s.sent_id} for task in tasks[1:]}
    used: dict[str, set[str]] = {task: set() for task in tasks[1:]}
    examples, aligned, mismatch = [], 0, 0
    documents = document_ids(corpora[tasks[0]]) or [None] * len(corpora[tasks[0]])
    for sentence, document in zip(corpora[tasks[0]], documents):
        labels = {tasks[0]: sentence.labels}
        for task in tasks[1:]:
            partner = by_id[task].get(sentence.sent_id) if sentence.sent_id else None
            if partner is None:
                continue
            if partner.tokens != sentence.tokens:
                mismatch += 1
                continue
            labels[task] = partner.labels
            used[task].add(partner.sent_id)  # type: ignore[arg-type]
        aligned += len(labels) == len(tasks)
        examples.append(Example(sentence.tokens, {k: v for k, v in labels.items() if v is not None}, document))
    unmatched = len(corpora[tasks[0]]) - sum(1 for e in examples if len(e.labels) > 1)
    for task in tasks[1:]:
        rest = [s for s in corpora[task] if s.sent_id not in used[task]]
        unmatched += len(rest)
        examples += [Example(s.tokens, {task: s.labels}) for s in rest if s.labels is not None]
    return Alignment(examples, aligned, mismatch, unmatched)
