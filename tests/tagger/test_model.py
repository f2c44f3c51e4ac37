"""The network: shapes for every encoder option, padding invariance, learning; batching."""

from __future__ import annotations

import random

import pytest
import torch

from tagger.batching import Example, Featurizer, bucketed
from tagger.config import ModelConfig, TaskConfig
from tagger.model import SequenceTagger
from tagger.vocab import Vocab


@pytest.fixture(scope="module")
def featurizer(ewt_sentences):
    sentences = ewt_sentences["train"][:50]
    words = Vocab(sorted({t.lower() for s in sentences for t in s.tokens}))
    chars = Vocab(sorted({c for s in sentences for t in s.tokens for c in t}))
    labels = {"upos": Vocab(sorted({l for s in sentences for l in s.labels}), specials=False)}
    return Featurizer(words, chars, labels, lowercase=True, max_chars=12)


@pytest.fixture(scope="module")
def examples(ewt_sentences):
    return [Example(s.tokens, {"upos": s.labels}) for s in ewt_sentences["train"][:8]]


def network(featurizer, **changes):
    config = ModelConfig(word_dim=16, tasks=[TaskConfig(name="upos", kind="tag")])
    config.char.hidden, config.encoder.hidden = 8, 12
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition(".")
        setattr(getattr(config, section) if section else config, key, value)
    return SequenceTagger(config, len(featurizer.words), len(featurizer.chars),
                          {"upos": len(featurizer.labels["upos"])}).eval()


@pytest.mark.parametrize("changes, hidden", [
    ({}, 24),
    ({"char.encoder": "lstm"}, 24),
    ({"char.encoder": "none"}, 24),
    ({"char.kernel": 4}, 24),
    ({"encoder.cell": "gru"}, 24),
    ({"encoder.cell": "rnn", "encoder.layers": 2}, 24),
    ({"encoder.merge": "average"}, 12),
])
def test_shapes(featurizer, examples, changes, hidden):
    model = network(featurizer, **changes)
    batch = featurizer.batch(examples)
    emissions = model(batch.words, batch.chars, batch.char_index, batch.mask)["upos"]
    assert emissions.shape == (len(examples), batch.mask.size(1), len(featurizer.labels["upos"]))
    assert model.encoder.output_dim == hidden


@pytest.mark.parametrize("changes", [{}, {"char.encoder": "lstm"}, {"encoder.cell": "gru", "encoder.layers": 2}])
def test_padding_does_not_change_a_sentence(featurizer, examples, changes):
    model = network(featurizer, **changes)
    short = min(examples, key=lambda e: len(e.tokens))
    long = max(examples, key=lambda e: len(e.tokens))
    alone = featurizer.batch([short])
    padded = featurizer.batch([long, short])
    a = model(alone.words, alone.chars, alone.char_index, alone.mask)["upos"][0]
    b = model(padded.words, padded.chars, padded.char_index, padded.mask)["upos"][1, : len(short.tokens)]
    assert torch.allclose(a, b, atol=1e-5)


def test_a_few_steps_reduce_the_loss(featurizer, examples):
    torch.manual_seed(0)
    model = network(featurizer, dropout=0.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = featurizer.batch(examples)
    losses = []
    for _ in range(30):
        emissions = model(batch.words, batch.chars, batch.char_index, batch.mask)
        loss = model.loss(emissions, batch.tags, batch.has_tags, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_featurizer(featurizer):
    batch = featurizer.batch([Example(("The", "the", "Zyzzyva"), {"upos": ("DET", "DET", "NOUN")}),
                              Example(("the",), {})])
    assert batch.words.shape == (2, 3) and batch.mask.tolist() == [[True] * 3, [True, False, False]]
    assert batch.words[0, 0] == batch.words[0, 1] == featurizer.words.id("the")
    assert batch.words[0, 2] == 1  # unknown word
    assert batch.chars.size(0) == 3  # distinct forms: The, the, Zyzzyva
    assert batch.char_index[0].tolist() == [0, 1, 2] and batch.char_index[1, 0] == 1
    assert batch.chars.size(1) == 7
    assert batch.has_tags["upos"].tolist() == [True, False]
    assert featurizer.labels["upos"].items[batch.tags["upos"][0, 2]] == "NOUN"


def test_long_words_keep_prefix_and_suffix(featurizer):
    ids = featurizer._char_ids("internationalisation")  # 20 characters, 12 kept
    assert featurizer.chars.items[ids[0]] == "i" and len(ids) == 12
    assert [featurizer.chars.items[i] for i in ids[-3:]] == ["i", "o", "n"]


@pytest.mark.parametrize("batch_size, max_tokens", [(4, None), (3, 40), (100, 25)])
def test_bucketed_covers_every_index_once(batch_size, max_tokens):
    lengths = [random.Random(i).randint(1, 20) for i in range(57)]
    batches = list(bucketed(lengths, batch_size, random.Random(7), max_tokens))
    assert sorted(i for b in batches for i in b) == list(range(57))
    assert all(len(b) <= batch_size for b in batches)
    if max_tokens:
        assert all(len(b) == 1 or max(lengths[i] for i in b) * len(b) <= max_tokens for b in batches)
    assert batches == list(bucketed(lengths, batch_size, random.Random(7), max_tokens))
    assert batches != list(bucketed(lengths, batch_size, random.Random(8), max_tokens))
