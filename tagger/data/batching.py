"""From token strings to tensors: the featurizer and length-bucketed batches."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tagger.data.schemes import convert
from tagger.data.vocab import Vocab


CHAR_CACHE_SIZE = 50_000  # forms; about 10 MB when full (Zipf: the first forms seen are the frequent ones)

# Casing classes (0 is padding). Lower-cased word vectors lose capitalisation; this gives
# it back to the encoder as one small embedding per token.
CASINGS = ("<pad>", "other", "numeric", "mainly_numeric", "lower", "upper", "title", "mixed", "has_digit")


def casing(token: str) -> int:
    """The casing class of a token: an index into :data:`CASINGS`."""
    if token.isdigit():
        return 2
    digits = sum(c.isdigit() for c in token)
    if digits and digits / len(token) > 0.5:
        return 3
    if token.islower():
        return 4
    if token.isupper():
        return 5
    if token[:1].isupper() and (len(token) == 1 or token[1:].islower()):
        return 6
    if any(c.isupper() for c in token) and any(c.islower() for c in token):
        return 7
    return 8 if digits else 1


def length_mask(lengths: Sequence[int]) -> Tensor:
    """(B, max length) True on the first ``lengths[b]`` positions of row b."""
    return torch.arange(max(lengths, default=0)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


@dataclass(frozen=True)
class Example:
    """Tokens and, for training and evaluation, labels per task (IOB2 for span tasks).
    A task missing from ``labels`` is not trained on for this sentence. ``document``: the
    document the sentence belongs to (for document context), None if unknown."""

    tokens: tuple[str, ...]
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    document: int | None = None


@dataclass
class Batch:
    """Tensors for a batch of sentences. Characters are encoded once per distinct surface
    form in the batch: ``chars`` holds the forms, ``char_index`` points tokens at them.

    Attributes:
        words: (B, T) word ids.
        chars: (U, C) character ids of the U distinct forms.
        char_index: (B, T) row of ``chars`` for each token.
        casing: (U,) casing class of each distinct form (see :func:`casing`), or None for
            models without the casing feature.
        mask: (B, T) True on real tokens.
        tags: task -> (B, T) gold tag ids, for tasks labelled in this batch.
        has_tags: task -> (B,) True for the rows that carry that task's labels.
    """

    words: Tensor
    chars: Tensor
    char_index: Tensor
    casing: Tensor | None
    mask: Tensor
    tags: dict[str, Tensor] = field(default_factory=dict)
    has_tags: dict[str, Tensor] = field(default_factory=dict)


class Featurizer:
    """Maps tokens and labels to ids with the model's vocabularies.

    Args:
        words: word vocabulary (lower-cased when ``lowercase``).
        chars: character vocabulary.
        labels: task -> label vocabulary in the task's internal encoding.
        encodings: task -> ``iobes`` for span tasks trained on IOBES (labels arrive as IOB2).
        casing: compute casing classes (for models with ``casing_dim`` > 0).
    """

    def __init__(self, words: Vocab, chars: Vocab, labels: Mapping[str, Vocab], lowercase: bool,
                 max_chars: int, encodings: Mapping[str, str] | None = None, casing: bool = False):
        self.words, self.chars, self.labels = words, chars, dict(labels)
        self.casing = casing
        self.lowercase, self.max_chars = lowercase, max_chars
        self.encodings = dict(encodings or {})
        self._char_cache: dict[str, list[int]] = {}  # form -> char ids; forms repeat a lot (Zipf)

    def word_key(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def _char_ids(self, token: str) -> list[int]:
        cached = self._char_cache.get(token)
        if cached is not None:
            return cached
        form = token
        if len(form) > self.max_chars:  # keep prefix and suffix, where morphology lives
            head = self.max_chars // 2
            form = form[:head] + form[len(form) - (self.max_chars - head):]
        ids = self.chars.ids(form)
        if len(self._char_cache) < CHAR_CACHE_SIZE:
            self._char_cache[token] = ids
        return ids

    def batch(self, examples: Sequence[Example], with_labels: bool = True) -> Batch:
        lengths = [len(e.tokens) for e in examples]
        size, width = len(examples), max(lengths)
        forms: dict[str, int] = {}
        word_rows, index_rows = [], []
        word_id, key = self.words.id, self.word_key
        for example in examples:  # rows built as lists, each tensor made in one call
            pad = [0] * (width - len(example.tokens))
            word_rows.append([word_id(key(t)) for t in example.tokens] + pad)
            index_rows.append([forms.setdefault(t, len(forms)) for t in example.tokens] + pad)
        words = torch.tensor(word_rows, dtype=torch.long)
        char_index = torch.tensor(index_rows, dtype=torch.long)
        char_rows = [self._char_ids(form) for form in forms]
        longest = max(map(len, char_rows))
        chars = torch.tensor([ids + [0] * (longest - len(ids)) for ids in char_rows], dtype=torch.long)
        form_casing = torch.tensor([casing(form) for form in forms], dtype=torch.long) if self.casing else None
        batch = Batch(words, chars, char_index, form_casing, length_mask(lengths))
        if with_labels:
            for task, vocab in self.labels.items():
                present = [task in e.labels for e in examples]
                if not any(present):
                    continue
                tags = torch.zeros(size, width, dtype=torch.long)
                for row, example in enumerate(examples):
                    if present[row]:
                        tags[row, : lengths[row]] = torch.tensor(vocab.ids(self.encode_labels(task, example.labels[task])))
                batch.tags[task] = tags
                batch.has_tags[task] = torch.tensor(present)
        return batch

    def encode_labels(self, task: str, labels: Sequence[str]) -> list[str]:
        """IOB2 labels -> the task's internal encoding."""
        return convert(labels, "iob2", "iobes") if self.encodings.get(task) == "iobes" else list(labels)

    def decode_labels(self, task: str, labels: Sequence[str]) -> list[str]:
        """Internal encoding -> IOB2 (well-formed even if decoding was not constrained)."""
        if task not in self.encodings:
            return list(labels)
        return convert(labels, self.encodings[task], "iob2")  # type: ignore[arg-type]


def bucketed(lengths: Sequence[int], batch_size: int, rng: random.Random | None = None,
             max_tokens: int | None = None) -> Iterator[list[int]]:
    """Group indices of similar length into batches; shuffled when ``rng`` is given.

    Batches hold at most ``batch_size`` sentences and, if given, ``max_tokens`` padded tokens.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random() if rng else 0))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max(lengths[index], max((lengths[i] for i in current[-1:]), default=0))
        if current and (len(current) >= batch_size or (max_tokens and longest * (len(current) + 1) > max_tokens)):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    if rng:
        rng.shuffle(batches)
    yield from batches
