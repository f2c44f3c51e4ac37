"""Document context: a name that occurs twice in a document is usually the same kind of entity.

The BiLSTM reads one sentence at a time, so "Miramar" in "What is this Miramar?" is tagged
without the help of "It is a place in Argentina" two lines on. At decoding, for each span
task, the emission scores of every occurrence of a word that occurs more than once in a
document (compared lowercased; by default only occurrences that start with a capital
letter) move ``weight`` of the way to their mean over those occurrences::

    e'(occurrence) = (1 - weight) * e(occurrence) + weight * mean(e(its occurrences in the document))

and each sentence is then decoded as before, with the CRF's transitions unchanged. Tag
tasks (POS) keep their scores: a word's part of speech depends on its sentence.

Where the documents come from: a text given to :class:`tagger.Tagger` is one document;
a corpus marks them with ``# newdoc`` (CoNLL-U, Universal NER) or ``-DOCSTART-``
(CoNLL-2003), see :func:`tagger.data.corpus.document_ids`. The weight is part of the model
(``config.json``'s ``context``, or ``ensemble.json``'s), chosen on dev data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import torch

from tagger.config import ContextConfig


def pool_emissions(sentences: Sequence[Sequence[str]], emissions: Sequence[torch.Tensor],
                   documents: Sequence[Hashable], config: ContextConfig) -> list[torch.Tensor]:
    """Mix each repeated word's emissions with their mean over its document.

    Args:
        sentences: the tokens of each sentence.
        emissions: one ``(tokens, labels)`` tensor per sentence (of one task).
        documents: the document of each sentence (any hashable id).

    Returns:
        New emissions; the inputs are left as they were.
    """
    weight = config.weight
    if weight == 0:
        return list(emissions)
    occurrences: dict[tuple[Hashable, str], list[tuple[int, int]]] = defaultdict(list)
    for i, (tokens, document) in enumerate(zip(sentences, documents, strict=True)):
        for j, token in enumerate(tokens):
            if not config.capitalized_only or token[:1].isupper():
                occurrences[(document, token.lower())].append((i, j))
    pooled = list(emissions)
    copied: set[int] = set()
    for places in occurrences.values():
        if len(places) < 2:
            continue
        mean = torch.stack([emissions[i][j] for i, j in places]).mean(0)
        for i, j in places:
            if i not in copied:
                pooled[i] = pooled[i].clone()
                copied.add(i)
            pooled[i][j] = (1 - weight) * emissions[i][j] + weight * mean
    return pooled
