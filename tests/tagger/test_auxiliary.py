"""Auxiliary corpora (``tagger train --aux``): other corpora's tasks learned alongside a
corpus's own on the shared encoder, their heads left out of the saved model."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from tagger.cli import app
from tagger.config import CorpusFormat, TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.corpus import CorpusError
from tagger.data.datasets import auxiliary_examples
from tagger.data.readers import load_corpus
from tagger.inference.predict import predict
from tagger.model.artifact import without_auxiliary
from tagger.model.directory import load_model
from tagger.training.train import train

runner = CliRunner()


@pytest.fixture(scope="module")
def aux_files(tmp_path_factory, shared_data, write_head):
    """The first 120 sentences of EWT (UPOS) and of Universal NER (the same sentences, entities)."""
    directory = tmp_path_factory.mktemp("aux")
    return (write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-train.conllu", directory / "ewt.conllu", 120),
            write_head(shared_data / "uner-english-ewt" / "en_ewt-ud-train.iob2", directory / "uner.iob2", 120))


@pytest.fixture(scope="module")
def wnut(shared_data):
    def read(name, count):
        return [Example(s.tokens, {"ner": s.labels})
                for s in load_corpus(shared_data / "wnut17" / name).sentences[:count]]
    return read("wnut17train.conll", 150), read("emerging.dev.conll", 40)


def small_config(tasks: list[TaskConfig]) -> TaggerConfig:
    config = TaggerConfig()
    config.model.tasks = tasks
    config.model.word_dim, config.model.char.hidden, config.model.encoder.hidden = 32, 16, 32
    config.train.epochs, config.train.batch_size, config.train.lr = 1, 16, 0.01
    return config


def test_one_task_per_file_joined_on_the_sentences_they_share(aux_files):
    ewt, uner = aux_files
    tasks, examples = auxiliary_examples([ewt, uner])
    assert [(t.name, t.kind, t.column, t.auxiliary) for t in tasks] == [("aux1", "tag", "upos", True),
                                                                        ("aux2", "span", None, True)]
    pos, ner = load_corpus(ewt, CorpusFormat(label_column="upos")), load_corpus(uner)
    assert len(examples) == 120  # the same 120 sentences in both files: each once, with both tasks
    assert all(set(e.labels) == {"aux1", "aux2"} and e.document is None for e in examples)
    assert [e.labels["aux1"] for e in examples] == [s.labels for s in pos.sentences]
    assert [e.labels["aux2"] for e in examples] == [s.labels for s in ner.sentences]
    tasks, _ = auxiliary_examples([uner], taken=["ner", "aux1"])  # past the names a corpus already uses
    assert [t.name for t in tasks] == ["aux2"]


def test_a_bad_auxiliary_corpus_says_which_file(tmp_path, aux_files):
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="empty.conll:1: no token lines"):
        auxiliary_examples([aux_files[0], empty])
    broken = tmp_path / "broken.conllu"
    broken.write_text("1\tword\n")
    with pytest.raises(CorpusError, match="broken.conllu"):
        auxiliary_examples([broken])


def test_auxiliary_heads_train_the_encoder_and_are_left_out_of_the_saved_model(aux_files, wnut, tmp_path):
    train_part, dev_part = wnut
    tasks, examples = auxiliary_examples(aux_files)
    config = small_config([TaskConfig(name="ner", kind="span"), *tasks])
    config.train.auxiliary = [str(p) for p in aux_files]
    config.train.max_sentences = 100  # of WNUT's own: every auxiliary sentence is kept
    result = train(config, train_part + examples, dev_part, tmp_path / "with", progress=False)
    plain = small_config([TaskConfig(name="ner", kind="span")])
    plain.train.max_sentences = 100
    alone = train(plain, train_part, dev_part, tmp_path / "alone", progress=False)

    saved = json.loads((tmp_path / "with" / "config.json").read_text())
    assert [t["name"] for t in saved["model"]["tasks"]] == ["ner"]
    assert saved["train"]["auxiliary"] == [str(p) for p in aux_files]
    assert list(json.loads((tmp_path / "with" / "labels.json").read_text())) == ["ner"]
    weights = load_file(tmp_path / "with" / "weights.safetensors")
    assert not any(".aux" in name for name in weights) and "heads.ner.weight" in weights
    metrics = json.loads((tmp_path / "with" / "metrics.json").read_text())
    assert metrics["train_sentences"] == 220 and metrics["auxiliary_sentences"] == 120
    assert list(metrics["dev"]) == ["ner"]
    card = (tmp_path / "with" / "README.md").read_text()
    assert "auxiliary corpora (120 of those sentences)" in card and str(aux_files[1]) in card

    # the auxiliary labels are learned: their sentences carry POS and entity losses, more per sentence
    # than a tweet's entities alone (were they dropped, those 120 sentences would add nothing)
    assert metrics["history"][0]["loss"] > 1.3 * json.loads((tmp_path / "alone" / "metrics.json").read_text()
                                                            )["history"][0]["loss"]
    loaded = load_model(tmp_path / "with")
    assert loaded.tasks == ["ner"] and result.model.tasks == ["ner"]
    assert all(set(p) == {"ner"} for p in predict(loaded, [e.tokens for e in dev_part]))
    assert without_auxiliary(loaded) is loaded


def test_resume_needs_the_same_auxiliary_corpora(aux_files, wnut, tmp_path):
    train_part, dev_part = wnut
    tasks, examples = auxiliary_examples(aux_files)
    config = small_config([TaskConfig(name="ner", kind="span"), *tasks])
    config.train.epochs = 2

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, train_part + examples, dev_part, tmp_path / "run", progress=False, on_epoch=interrupt)
    plain = small_config([TaskConfig(name="ner", kind="span")])
    plain.train.epochs = 2
    with pytest.raises(ValueError, match="the checkpoint does not fit this run's network"):
        train(plain, train_part, dev_part, tmp_path / "run", resume=True, progress=False)
    resumed = train(config, train_part + examples, dev_part, tmp_path / "run", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2] and resumed.model.tasks == ["ner"]


def test_only_auxiliary_tasks_or_a_student_with_them_are_refused(aux_files, wnut, tmp_path, tiny_ner_model):
    from tagger.training.distill import distill

    tasks, examples = auxiliary_examples(aux_files)
    with pytest.raises(ValueError, match="every task is auxiliary"):
        train(small_config(tasks), examples, wnut[1], tmp_path / "m", progress=False)
    config = small_config([])
    config.train.auxiliary = [str(aux_files[0])]
    with pytest.raises(ValueError, match="a student learns its tasks from its teachers"):
        distill(config, [tiny_ner_model], wnut[0], wnut[1], tmp_path / "s", progress=False)
    assert not (tmp_path / "m").exists() and not (tmp_path / "s").exists()


def test_auxiliary_corpora_refuse_a_base_model(aux_files, wnut, tmp_path, tiny_ner_model):
    tasks, examples = auxiliary_examples(aux_files[1:])
    config = small_config([TaskConfig(name="ner", kind="span"), *tasks])
    with pytest.raises(ValueError, match="not with a base model or teachers"):
        train(config, wnut[0] + examples, wnut[1], tmp_path / "m", progress=False, base=load_model(tiny_ner_model))


def test_train_aux_on_the_command_line(aux_files, tmp_path, shared_data, write_head):
    train_file = write_head(shared_data / "wnut17" / "wnut17train.conll", tmp_path / "t.conll", 150)
    dev_file = write_head(shared_data / "wnut17" / "emerging.dev.conll", tmp_path / "d.conll", 40)
    result = runner.invoke(app, [str(a) for a in (
        "train", "--train", train_file, "--dev", dev_file, "--output", tmp_path / "m", "--aux", aux_files[0],
        "--aux", aux_files[1], "--epochs", "1", "--quiet", "--set", "model.word_dim=32",
        "--set", "model.encoder.hidden=32", "--set", "model.char.hidden=16")])
    assert result.exit_code == 0, result.output
    assert "recipe: span-small" in result.output  # chosen for WNUT's 150 tweets alone
    own = len(load_corpus(train_file).sentences)
    assert (f"auxiliary: aux1 (tag, column upos) from {aux_files[0]}, aux2 (span) from {aux_files[1]}; 120 sentences besides "
            f"this corpus's {own:,}") in result.output
    assert "dev ner F1" in result.output and "aux1" not in result.output.split("saved")[-1]
    tagged = runner.invoke(app, ["tag", "--model", str(tmp_path / "m")], input="Going to Paris with Justin Bieber .\n")
    assert tagged.exit_code == 0, tagged.output
    assert set(json.loads(tagged.stdout)["tokens"][0]) >= {"text", "label"}
    missing = runner.invoke(app, [str(a) for a in ("train", "--train", train_file, "--dev", dev_file, "--output",
                                                   tmp_path / "n", "--aux", tmp_path / "nope.conllu", "--epochs", "1")])
    assert missing.exit_code != 0 and "nope.conllu" in missing.output
    assert not (tmp_path / "n").exists()
