"""Built-in recipes: the corpus profile, which recipe fits which real corpus, and tagger train
choosing one (and saying so) when no --config is given."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tagger.cli import app
from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.readers import load_corpus
from tagger.data.vectors import available
from tagger.training.recipes import choose, fit, profile, recipes


def examples(path, task):
    corpus = load_corpus(path, kind=task.kind)
    return [Example(s.tokens, {task.name: s.labels}) for s in corpus.sentences]


NER, POS = TaskConfig(name="ner", kind="span"), TaskConfig(name="upos", kind="tag")


def test_wnut17_is_a_small_sparse_span_corpus_and_gets_the_small_span_recipe(shared_data):
    tweets = examples(shared_data / "wnut17" / "wnut17train.conll", NER)
    corpus = profile(tweets, [NER])
    assert (corpus.kind, corpus.sentences, corpus.labels) == ("span", 3394, 6)
    assert 3 < corpus.entities_per_100_tokens < 5 and corpus.lowercase_share > 0.05
    recipe = choose(corpus)
    assert recipe.name == "span-small" and "3,394 sentences" in recipe.reason
    assert recipe.settings["train"]["epochs"] == 60 and recipe.settings["model"]["max_vectors"] == 400000
    # GloVe 100d where `tagger vectors glove-6b-100d` installed it, else 50d, said in the reason
    # (the fallback itself: tests/tagger/test_vectors.py)
    installed = available("glove-6b-100d")
    assert recipe.settings["model"]["vectors"] == ("glove-6b-100d" if installed else "glove-6b-50d")
    assert ("glove-6b-100d not installed" in recipe.reason) is not installed


def test_ewt_gets_the_tagging_recipe_and_a_slice_of_it_the_small_one(ewt_sentences):
    full = [Example(s.tokens, {"upos": s.labels}) for s in ewt_sentences["train"]]
    assert choose(profile(full, [POS])).name == "tag"
    assert choose(profile(full[:1000], [POS])).name == "tag-small"


def test_fit_keeps_tasks_data_and_overrides_on_top_of_the_recipe(shared_data):
    tweets = examples(shared_data / "wnut17" / "wnut17train.conll", NER)
    config = TaggerConfig()
    config.model.tasks = [NER]
    fitted = fit(config, tweets, {"train.epochs": 3, "model.encoder.hidden": 64})
    assert fitted.model.tasks == [NER] and fitted.train.epochs == 3 and fitted.model.encoder.hidden == 64
    assert fitted.train.patience == 12 and fitted.recipe.startswith("span-small")


def test_every_recipe_is_a_valid_config_and_says_when_it_applies():
    found = recipes()
    assert {name for name, _ in found} == {"span", "span-small", "tag", "tag-small"}
    for name, raw in found:
        assert raw["recipe"]["description"] and raw["recipe"]["when"]["kind"] in ("span", "tag")
        TaggerConfig.model_validate({k: v for k, v in raw.items() if k != "recipe"})


def test_tagger_train_without_config_prints_and_records_the_recipe(tmp_path, shared_data, write_head):
    train = write_head(shared_data / "wnut17" / "wnut17train.conll", tmp_path / "train.conll", 300)
    dev = write_head(shared_data / "wnut17" / "emerging.dev.conll", tmp_path / "dev.conll", 60)
    result = CliRunner().invoke(app, [str(a) for a in (
        "train", "--train", train, "--dev", dev, "--output", tmp_path / "m", "--epochs", 1, "--quiet",
        "--set", "model.encoder.hidden=32", "--set", "model.char.hidden=16")])
    assert result.exit_code == 0, result.output
    assert "recipe: span-small" in result.output and "span task" in result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["recipe"].startswith("span-small") and config["train"]["patience"] == 12
    assert config["train"]["epochs"] == 1 and config["model"]["encoder"]["hidden"] == 32  # the command line wins
    assert "- recipe: span-small" in (tmp_path / "m" / "README.md").read_text()
