"""Pretrained vectors: GloVe and word2vec text files, the packaged GloVe 6B 50d, and their
use as the initial word embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.vectors import VectorsError, load_vectors
from tagger.training.train import build_vocabularies

GLOVE = "the 0.1 0.2 0.3\n, -0.5 0.25 1\nparis 1.5 -2 0.75\n"


def test_glove_text_file(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text(GLOVE)
    words, matrix = load_vectors(str(path))
    assert words == ["the", ",", "paris"]
    assert matrix.dtype == np.float32 and matrix.shape == (3, 3)
    np.testing.assert_allclose(matrix[2], [1.5, -2, 0.75])


def test_word2vec_text_file_with_header_and_limit(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("3 3\n" + GLOVE)
    words, matrix = load_vectors(str(path), limit=2)
    assert words == ["the", ","] and matrix.shape == (2, 3)


@pytest.mark.parametrize("content, message", [
    ("the 0.1 0.2\nbad 0.1\n", ":2: expected a word and 2 numbers"),
    ("the 0.1 zero\n", ":1: not a number"),
    ("", "no vectors"),
])
def test_bad_vector_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(VectorsError, match=message):
        load_vectors(str(path))


def test_missing_vectors_are_named():
    with pytest.raises(VectorsError, match="not a file, nor one of glove-6b-50d"):
        load_vectors("no-such-vectors")


def test_packaged_glove_6b_50d():
    words, matrix = load_vectors("glove-6b-50d", limit=5000)
    assert words[:3] == ["the", ",", "."]
    assert matrix.shape == (5000, 50)
    similar = matrix[words.index("paris")] @ matrix[words.index("london")]
    unrelated = matrix[words.index("paris")] @ matrix[words.index("but")]
    assert similar > unrelated


def test_vocabulary_keeps_training_words_plus_top_vectors(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text(GLOVE + "berlin 0 0 1\nrome 0 1 0\n")
    config = TaggerConfig()
    config.model.tasks = [TaskConfig(name="upos", kind="tag")]
    config.model.vectors, config.model.max_vectors = str(path), 2
    train = [Example(("Paris", "is", "nice"), {"upos": ("PROPN", "AUX", "ADJ")})]
    words, chars, labels, table, pretrained = build_vocabularies(config, train)
    assert words.items[:2] == ["<pad>", "<unk>"]
    assert {"paris", "is", "nice", "the", ","} == set(words.items[2:])  # top 2 vectors, not berlin/rome
    assert table.shape == (len(words), 3)
    np.testing.assert_allclose(table[words.id("paris")], [1.5, -2, 0.75])
    np.testing.assert_allclose(table[0], 0)
    assert [words.items[i] for i in np.flatnonzero(pretrained)] == ["paris", "the", ","]
    assert labels["upos"].items == ["ADJ", "AUX", "PROPN"]
    assert "P" in chars and "<unk>" in chars


def test_frozen_vectors_stay_fixed_while_other_rows_learn(tmp_path, ewt_sentences):
    import torch

    from tagger.training.train import train

    path = tmp_path / "glove.txt"
    # "zzunseen": a row past the training words', so training runs with the word rows in use
    path.write_text("the 0.1 0.2 0.3\n. -0.5 0.25 1\nof 1.5 -2 0.75\nzzunseen 1 1 1\n")
    config = TaggerConfig()
    config.model.tasks = [TaskConfig(name="upos", kind="tag")]
    config.model.vectors, config.model.freeze_vectors = str(path), True
    config.model.char.hidden, config.model.encoder.hidden = 8, 16
    config.train.epochs = 1
    examples = [Example(s.tokens, {"upos": s.labels}) for s in ewt_sentences["train"][:80]]
    result = train(config, examples, examples[:10], tmp_path / "m", progress=False)
    weights = result.model.network.word_embed.weight
    words = result.model.featurizer.words
    assert torch.allclose(weights[words.id("of")], torch.tensor([1.5, -2, 0.75]))
    assert torch.allclose(weights[words.id("the")], torch.tensor([0.1, 0.2, 0.3]))
    _, _, _, table, _ = build_vocabularies(config, examples)  # the same seeded start
    assert not torch.allclose(weights[words.id("in")], torch.from_numpy(table[words.id("in")]))
    assert result.model.config.model.word_dim == 3
