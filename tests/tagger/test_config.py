"""Typed configs: TOML recipes, dotted overrides, --set assignments, errors naming the key."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from tagger.config import ConfigError, CorpusFormat, TaggerConfig, load_config, parse_assignment

RECIPE = """lang = "de"

[data]
format = "columns"
label_column = 4
scheme = "iob1"

[model]
vectors = "glove-6b-50d"
word_dim = 50

[model.encoder]
cell = "gru"

[[model.tasks]]
name = "ner"
kind = "span"

[[model.tasks]]
name = "pos"
kind = "tag"
column = 2
decoder = "softmax"

[train]
epochs = 7
"""


@pytest.fixture
def recipe(tmp_path):
    def write(text: str | bytes):
        path = tmp_path / "recipe.toml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return write


def test_defaults():
    config = load_config()
    assert config == TaggerConfig() == load_config(None, {})
    assert (config.data.format, config.data.scheme, config.model.tasks) == ("auto", "auto", [])
    assert (config.train.epochs, config.train.lr, config.model.encoder.hidden) == (30, 0.002, 200)


def test_recipe(recipe):
    config = load_config(recipe(RECIPE))
    assert config.lang == "de"
    assert config.data == CorpusFormat(format="columns", label_column=4, scheme="iob1")
    assert (config.model.vectors, config.model.word_dim, config.model.encoder.cell) == ("glove-6b-50d", 50, "gru")
    assert [(t.name, t.kind, t.column, t.decoder, t.encoding) for t in config.model.tasks] == [
        ("ner", "span", None, "crf", "iobes"), ("pos", "tag", 2, "softmax", "iobes")]
    assert (config.train.epochs, config.train.lr) == (7, 0.002)  # untouched keys keep their defaults


def test_overrides_win_over_the_recipe(recipe):
    overrides = {"train.epochs": 3, "train.lr": 0.01, "model.encoder.layers": 2, "model.char.encoder": "lstm",
                 "lang": "fr", "data.label_column": "xpos", "train.seed": None}
    config = load_config(recipe(RECIPE), overrides)
    assert (config.train.epochs, config.train.lr, config.train.seed) == (3, 0.01, 1)  # None is skipped
    assert (config.model.encoder.layers, config.model.encoder.cell) == (2, "gru")     # siblings kept
    assert (config.model.char.encoder, config.lang, config.data.label_column) == ("lstm", "fr", "xpos")
    assert overrides["train.seed"] is None and len(overrides) == 7                     # not mutated


def test_overrides_without_a_recipe_create_tables():
    config = load_config(None, {"model.encoder.dropout": 0.1, "train.optimizer": "sgd"})
    assert (config.model.encoder.dropout, config.train.optimizer) == (0.1, "sgd")


def test_assignments_feed_overrides():
    overrides = dict(map(parse_assignment, ["train.lr=1e-3", "model.lowercase=false", "model.encoder.cell=gru"]))
    config = load_config(None, overrides)
    assert (config.train.lr, config.model.lowercase, config.model.encoder.cell) == (0.001, False, "gru")


def test_json_round_trip(recipe):
    config = load_config(recipe(RECIPE), {"train.max_sentences": 100})
    assert TaggerConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize("text, expected", [
    ("train.lr=0.01", ("train.lr", 0.01)),
    ("train.lr=1e-3", ("train.lr", 0.001)),
    ("train.epochs = 3", ("train.epochs", 3)),
    ("model.lowercase=false", ("model.lowercase", False)),
    ("model.encoder.cell=gru", ("model.encoder.cell", "gru")),       # not TOML: kept as a string
    ('model.vectors="my vectors.txt"', ("model.vectors", "my vectors.txt")),
    ("model.vectors=/data/glove.txt", ("model.vectors", "/data/glove.txt")),
    ("model.vectors=a=b", ("model.vectors", "a=b")),                 # split at the first =
    ("model.vectors=", ("model.vectors", "")),
    ("train.max_sentences=[1, 2]", ("train.max_sentences", [1, 2])),
    ("lang=2024-01-01", ("lang", datetime.date(2024, 1, 1))),        # TOML values are TOML values
])
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["no-equals-sign", "=5", "  = 5", ""])
def test_bad_assignment(text):
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        parse_assignment(text)


@pytest.mark.parametrize("text, overrides, message", [
    ("surprise = 1\n", {}, "surprise: Extra inputs are not permitted"),
    ("[model]\nsurprise = 1\n", {}, "model.surprise: Extra inputs are not permitted"),
    ("[model.encoder]\nlayer = 2\n", {}, "model.encoder.layer: Extra inputs are not permitted"),
    ("", {"train.lr": -1}, "train.lr: Input should be greater than 0"),
    ("", {"train.epochs": "many"}, "train.epochs: Input should be a valid integer"),
    ("", {"model.encoder.cell": "transformer"}, "model.encoder.cell: Input should be 'lstm', 'gru' or 'rnn'"),
    ("", {"model.encoder.dropout": 1.0}, "model.encoder.dropout: Input should be less than 1"),
    ("", {"data.token_column": 0}, "data.token_column: Input should be greater than or equal to 1"),
    ("", {"data.scheme": "bio"}, "data.scheme"),
    ("", {"lang": 3}, "lang: Input should be a valid string"),
    ("[[model.tasks]]\nname = \"ner\"\nkind = \"spans\"\n", {}, "model.tasks.0.kind"),
    ("[[model.tasks]]\nname = \"ok\"\nkind = \"tag\"\n[[model.tasks]]\nname = \"Bad Name\"\nkind = \"tag\"\n", {},
     "model.tasks.1.name: String should match pattern"),
    ("[[model.tasks]]\nname = \"ner\"\n", {}, "model.tasks.0.kind: Field required"),
    ("", {"data.label_column": 0}, "label_column is 1-based"),
])
def test_validation_errors_name_the_key(recipe, text, overrides, message):
    path = recipe(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, overrides)
    assert str(error.value).startswith(f"{path}: invalid config: ")
    assert message in str(error.value)


def test_every_problem_is_reported(recipe):
    with pytest.raises(ConfigError) as error:
        load_config(recipe("[train]\nepochs = 0\nlr = 0\n"))
    assert "train.epochs: " in str(error.value) and "; train.lr: " in str(error.value)


def test_errors_without_a_file_have_no_path():
    with pytest.raises(ConfigError) as error:
        load_config(None, {"train.lr": 0})
    assert str(error.value).startswith("invalid config: train.lr: ")


@pytest.mark.parametrize("text, overrides, message", [
    ("train = 5\n", {"train.lr": 0.1}, "train.lr: train is not a table"),
    ("[[model.tasks]]\nname = \"ner\"\nkind = \"span\"\n", {"model.tasks.name": "x"},
     "model.tasks.name: tasks is not a table"),
])
def test_overrides_through_a_non_table(recipe, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(recipe(text), overrides)


@pytest.mark.parametrize("content, message", [
    ("[train\n", "recipe.toml: "),
    ("epochs = \n", "recipe.toml: "),
    (b"lang = \"\xff\"\n", "recipe.toml: "),
])
def test_unreadable_recipes(recipe, content, message):
    with pytest.raises(ConfigError, match=message):
        load_config(recipe(content))


def test_missing_recipe(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")


def test_configs_validate_assignments():
    config = TaggerConfig()
    config.train.epochs = 2
    assert config.train.epochs == 2
    with pytest.raises(ValidationError):
        config.train.epochs = 0
