"""The entity bias (decode.entity_bias): a recall knob on span tasks, chosen on dev after
training when the recipe gives a grid, overridden by tagger evaluate --entity-bias."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from tagger.cli import app
from tagger.config import ConfigError, DecodeConfig, TaggerConfig, TaskConfig, load_config
from tagger.data.batching import Example
from tagger.inference.predict import batch_emissions, predict
from tagger.model.directory import load_model
from tagger.model.ensemble import save_ensemble
from tagger.training.recipes import recipes
from tagger.training.train import choose_entity_bias, dev_score, evaluate_model, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _entities(model, sentences) -> int:
    return sum(label.startswith("B-") for p in predict(model, sentences, scores=False) for label in p["ner"].labels)


def test_a_bias_finds_more_mentions_and_zero_changes_nothing(tiny_ner_model, uner_sentences):
    sentences = [s.tokens for s in uner_sentences["dev"][:200]]
    model = load_model(tiny_ner_model)
    assert model.config.decode.entity_bias == 0
    plain = predict(model, sentences)
    counts = [_entities(model, sentences)]
    for bias in (1.0, 3.0):
        model.config = model.config.with_entity_bias(bias)
        counts.append(_entities(model, sentences))
    assert counts[0] < counts[1] < counts[2], counts
    model.config = model.config.with_entity_bias(0.0)
    again = predict(model, sentences)
    assert [p["ner"].labels for p in again] == [p["ner"].labels for p in plain]
    assert [p["ner"].scores for p in again] == [p["ner"].scores for p in plain]


def test_the_bias_is_added_once_to_entity_starts_with_document_context_and_in_ensembles(tiny_ner_model,
                                                                                      tiny_ner_model_seed2,
                                                                                      uner_sentences, tmp_path):
    sentences = [s.tokens for s in uner_sentences["dev"][:40]]
    documents = [i // 10 for i in range(len(sentences))]
    single = load_model(tiny_ner_model)
    single.config = single.config.with_context(weight=0.5)
    save_ensemble([load_model(tiny_ner_model), load_model(tiny_ner_model_seed2)], tmp_path / "ens",
                  decode=DecodeConfig(entity_bias=1.5))
    ensemble = load_model(tmp_path / "ens")
    assert ensemble.config.decode.entity_bias == 1.5  # the ensemble's own, from ensemble.json
    for model, bias in ((single, 2.0), (ensemble, 1.5)):
        model.config = model.config.with_entity_bias(0.0)
        plain = list(batch_emissions(model, sentences, documents))
        model.config = model.config.with_entity_bias(bias)
        biased = list(batch_emissions(model, sentences, documents))
        unbiased = list(batch_emissions(model, sentences, documents, entity_bias=False))  # as teachers label
        items = model.featurizer.labels["ner"].items
        expected = torch.tensor([bias if label[:2] in ("B-", "S-") else 0.0 for label in items])
        assert any(label[:2] in ("B-", "S-") for label in items) and "O" in items
        for (rows, before, _), (same_rows, after, _), (_, untouched, _) in zip(plain, biased, unbiased):
            assert rows == same_rows
            torch.testing.assert_close(after["ner"] - before["ner"], expected.expand_as(before["ner"]))
            torch.testing.assert_close(untouched["ner"], before["ner"])
    # members' own biases do not carry into an ensemble that sets none
    member = tmp_path / "biased-member"
    shutil.copytree(tiny_ner_model, member)
    config = json.loads((member / "config.json").read_text())
    config["decode"] = {"entity_bias": 3.0}
    (member / "config.json").write_text(json.dumps(config))
    assert load_model(member).config.decode.entity_bias == 3.0
    save_ensemble([load_model(member), load_model(tiny_ner_model_seed2)], tmp_path / "ens2")
    assert load_model(tmp_path / "ens2").config.decode.entity_bias == 0.0


def test_a_bias_set_in_the_config_is_kept_over_the_grid(tiny_ner_model, uner_sentences):
    model = load_model(tiny_ner_model)
    model.config = model.config.with_entity_bias(1.25)
    dev = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:50]]
    assert choose_entity_bias(model, dev, [0.5, 2.0]) == (None, None) and model.config.decode.entity_bias == 1.25


def test_the_choice_is_the_best_dev_score_and_is_written_beside_the_weights(tiny_ner_model, tiny_pos_model,
                                                                           uner_sentences, tmp_path):
    directory = tmp_path / "ner"
    shutil.copytree(tiny_ner_model, directory)
    model = load_model(directory)
    dev = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:300]]
    choice, reports = choose_entity_bias(model, dev, [2.0, 0.5, 1.0], directory)
    assert [row["bias"] for row in choice["grid"]] == [0.0, 0.5, 1.0, 2.0]
    best = max(row["dev"] for row in choice["grid"])
    assert choice["chosen"] == next(row["bias"] for row in choice["grid"] if row["dev"] == best)
    assert dev_score(model, reports) == pytest.approx(best)  # the reports are the chosen value's
    for row in choice["grid"]:  # each score is the model's dev score at that bias
        probe = load_model(tiny_ner_model)
        probe.config = probe.config.with_entity_bias(row["bias"])
        assert dev_score(probe, evaluate_model(probe, dev)) == pytest.approx(row["dev"])
    assert model.config.decode.entity_bias == choice["chosen"]
    assert load_model(directory).config.decode.entity_bias == choice["chosen"]
    # nothing to choose: no grid, or no span task
    assert choose_entity_bias(load_model(tiny_ner_model), dev, []) == (None, None)
    assert choose_entity_bias(load_model(tiny_pos_model), dev, [1.0]) == (None, None)


def test_training_with_a_grid_records_the_choice_in_metrics_config_and_card(uner_sentences, tmp_path):
    config = TaggerConfig()
    config.model.tasks = [TaskConfig(name="ner", kind="span")]
    config.model.word_dim, config.model.char.hidden, config.model.encoder.hidden = 32, 16, 32
    config.train.epochs, config.train.batch_size, config.train.lr = 2, 16, 0.01
    config.train.entity_bias_grid = [1.0, 2.0]
    train_part = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["train"][:300]]
    dev_part = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:80]]
    result = train(config, train_part, dev_part, tmp_path / "ner", progress=False)
    choice = result.metrics["entity_bias"]
    assert [row["bias"] for row in choice["grid"]] == [0.0, 1.0, 2.0]
    saved = load_model(tmp_path / "ner")
    assert saved.config.decode.entity_bias == choice["chosen"]
    assert json.loads((tmp_path / "ner" / "metrics.json").read_text())["entity_bias"] == choice
    # the reported dev scores are the chosen bias's
    assert dev_score(saved, result.metrics["dev"]) == pytest.approx(max(row["dev"] for row in choice["grid"]))
    assert "Chosen on dev among (bias: dev score) 0:" in (tmp_path / "ner" / "README.md").read_text()


def test_the_small_entity_recipe_chooses_a_bias_and_bad_values_are_refused():
    settings = dict(recipes())
    assert settings["span-small"]["train"]["entity_bias_grid"] == [0.5, 1.0, 1.5, 2.0, 3.0]
    assert load_config(None, base={k: v for k, v in settings["span-small"].items() if k != "recipe"}
                       ).train.entity_bias_grid == [0.5, 1.0, 1.5, 2.0, 3.0]
    assert "entity_bias_grid" not in settings["span"]["train"]  # the bundled models' recipe: none
    for key, value in (("train.entity_bias_grid", [-1.0]), ("decode.entity_bias", 50.0)):
        with pytest.raises(ConfigError):
            load_config(None, {key: value})


def test_tagger_evaluate_entity_bias_overrides_the_models(tiny_ner_model, shared_data):
    data = shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2"
    runner = CliRunner()
    reports = []
    for extra in ([], ["--entity-bias", "3"]):
        result = runner.invoke(app, ["evaluate", "--model", str(tiny_ner_model), "--data", str(data), "--json", *extra])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert (reports[0]["entity_bias"], reports[1]["entity_bias"]) == (0.0, 3.0)
    assert reports[1]["recall"] > reports[0]["recall"]  # more mentions found
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_ner_model), "--data", str(data), "--entity-bias", "3"])
    assert "entity bias: 3 added to entity-start labels' scores" in result.output
