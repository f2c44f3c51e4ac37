"""Typed configs: TOML recipes, dotted overrides, clear errors."""

from __future__ import annotations

import pytest

from tagger.config import ConfigError, TaggerConfig, load_config, parse_assignment


def test_defaults_and_recipe_with_overrides(tmp_path):
    assert load_config() == TaggerConfig()
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[model]\nvectors = "glove-6b-50d"\n[model.encoder]\ncell = "gru"\n'
                      '[[model.tasks]]\nname = "ner"\nkind = "span"\n[train]\nepochs = 7\n')
    config = load_config(recipe, {"train.lr": 0.01, "model.encoder.layers": 2, "train.seed": None})
    assert (config.model.vectors, config.model.encoder.cell, config.model.encoder.layers) == ("glove-6b-50d", "gru", 2)
    assert (config.train.epochs, config.train.lr, config.train.seed) == (7, 0.01, 1)
    assert config.model.tasks[0].name == "ner" and config.model.tasks[0].encoding == "iobes"
    assert TaggerConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize("text, expected", [
    ("train.lr=0.01", ("train.lr", 0.01)),
    ("model.encoder.cell=gru", ("model.encoder.cell", "gru")),
    ("model.lowercase=false", ("model.lowercase", False)),
    ("train.epochs = 3", ("train.epochs", 3)),
])
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("recipe, overrides, message", [
    ("[model]\nsurprise = 1\n", {}, "model.surprise: Extra inputs are not permitted"),
    ("", {"train.lr": -1}, "train.lr: Input should be greater than 0"),
    ("", {"model.encoder.cell": "transformer"}, "model.encoder.cell"),
    ("[train\n", {}, "recipe.toml"),
    ("", {"train.epochs": "many"}, "train.epochs"),
])
def test_errors_name_the_key(tmp_path, recipe, overrides, message):
    path = tmp_path / "recipe.toml"
    path.write_text(recipe)
    with pytest.raises(ConfigError, match=message):
        load_config(path, overrides)


def test_bad_assignment():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_assignment("no-equals-sign")
