"""Altered copies of gold training sentences, for the teachers to label in distillation.

A teacher's distribution on a sentence it was trained on is close to that sentence's gold
labels, so distilling on the training text alone teaches a student little beyond them. Copies
of the same sentences with their entity mentions and some words changed are in-domain inputs
the teachers have not seen: they label them (the copies carry no labels of their own), and the
student learns from what the teachers say there.

Each copy of a sentence:

- replaces each entity mention of the first span task, with probability ``mention_rate``, by
  a mention of the same type from elsewhere in the training data; within a document one
  mention is always replaced by the same one, so document context still pools over it;
- replaces each other token, with probability ``word_rate``, by a training word with the same
  tag in the first tag task, for open-class tags only: those with at least ``open_class``
  different words in the training data (nouns, verbs, adjectives, ... in any tag set, found
  from the data rather than named).

Copies keep their documents together, numbered after the last document of the input.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from tagger.data.batching import Example
from tagger.data.schemes import spans as read_spans


def augment(examples: Sequence[Example], copies: int, span_task: str | None, tag_task: str | None,
            seed: int = 1, mention_rate: float = 0.8, word_rate: float = 0.15, open_class: int = 50,
            first_document: int | None = None) -> list[Example]:
    """``copies`` altered copies of every example, without labels (see the module's text).

    Args:
        span_task: the task whose mentions are swapped (None: none are).
        tag_task: the task whose tags decide which words may replace a word (None: no word is
            replaced).
        first_document: the copies' first document number (default: after ``examples``').
    """
    if copies <= 0 or (span_task is None and tag_task is None):
        return []
    rng = random.Random(seed)
    pool: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    words: dict[str, list[str]] = defaultdict(list)
    found = [read_spans(e.labels.get(span_task, ())) if span_task else [] for e in examples]  # each example's mentions
    for example, spans in zip(examples, found):
        for kind, start, end in spans:
            pool[kind].append(example.tokens[start:end])
        inside = {i for _, start, end in spans for i in range(start, end)}
        for i, (word, tag) in enumerate(zip(example.tokens, example.labels.get(tag_task, ()) if tag_task else ())):
            if i not in inside:
                words[tag].append(word)
    open_tags = {tag for tag, seen in words.items() if len({w.lower() for w in seen}) >= open_class}

    if first_document is None:
        first_document = max((e.document for e in examples if e.document is not None), default=-1) + 1
    next_document = first_document
    altered: list[Example] = []
    for _ in range(copies):
        swapped: dict[tuple, tuple[str, ...]] = {}  # (document, type, mention) -> its replacement
        renumbered: dict[int | None, int] = {}
        for example, mentioned in zip(examples, found):
            spans = {start: (end, kind) for kind, start, end in mentioned}
            tags = example.labels.get(tag_task) if tag_task else None
            tokens: list[str] = []
            i = 0
            while i < len(example.tokens):
                if i in spans:
                    end, kind = spans[i]
                    key = (example.document, kind, example.tokens[i:end])
                    if key not in swapped:
                        swapped[key] = rng.choice(pool[kind]) if rng.random() < mention_rate else key[2]
                    tokens += swapped[key]
                    i = end
                    continue
                word = example.tokens[i]
                if tags is not None and tags[i] in open_tags and rng.random() < word_rate:
                    word = rng.choice(words[tags[i]])
                    if i == 0 and example.tokens[0][:1].isupper():
                        word = word[:1].upper() + word[1:]
                tokens.append(word)
                i += 1
            document = example.document if example.document is not None else ("sentence", len(altered))
            if document not in renumbered:
                renumbered[document] = next_document
                next_document += 1
            altered.append(Example(tuple(tokens), {}, renumbered[document]))
    return altered
