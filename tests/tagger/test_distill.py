"""Distillation: the teachers' labels on disk, the mixed objective, and students that learn
from teachers (an ensemble among them) on real EWT and Universal NER sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tagger.cli import app
from tagger.config import ContextConfig, DistillConfig, TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.inference.predict import predict
from tagger.model.directory import load_model
from tagger.model.ensemble import save_ensemble
from tagger.training.distill import DistillError, TeacherCache, assign_tasks, distill, distillation_objective, fingerprint, label_examples
from tagger.training.train import CHECKPOINT
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ner_ensemble(tmp_path_factory, tiny_ner_model, tiny_ner_model_seed2):
    """Two tiny NER members with document context 0.5: a teacher that pools across a document."""
    directory = tmp_path_factory.mktemp("teachers") / "ner-ensemble"
    save_ensemble([load_model(tiny_ner_model), load_model(tiny_ner_model_seed2)], directory,
                  context=ContextConfig(weight=0.5))
    return directory


def small_student(epochs: int = 2, **distill) -> TaggerConfig:
    config = TaggerConfig()
    config.model.word_dim, config.model.char.hidden, config.model.encoder.hidden = 32, 16, 32
    config.train.epochs, config.train.batch_size, config.train.lr = epochs, 16, 0.01
    config.distill = DistillConfig(**distill)
    return config


def test_the_cache_holds_each_teachers_marginals_with_its_document_context(tiny_pos_model, ner_ensemble,
                                                                           joint_examples, tmp_path):
    teachers = [load_model(tiny_pos_model), load_model(ner_ensemble)]
    assignment = assign_tasks(teachers)
    assert assignment == {"upos": 0, "ner": 1}
    examples = joint_examples[:120]
    cache = label_examples(teachers, assignment, examples, tmp_path / "cache", key="k", progress=False)
    assert cache.sentences == 120 and list(cache.labels()["ner"].items) == teachers[1].featurizer.labels["ner"].items
    documents = [e.document for e in examples]
    for k, task in ((0, "upos"), (1, "ner")):
        predicted = predict(teachers[k], [e.tokens for e in examples], documents=documents)
        vocab = teachers[k].featurizer.labels[task]
        for i, example in enumerate(examples):
            rows = np.asarray(cache.unary[task][cache.offsets[i]:cache.offsets[i + 1]], dtype=np.float64)
            np.testing.assert_allclose(rows.sum(1), 1.0, atol=2e-3)
            internal = teachers[k].featurizer.encode_labels(task, predicted[i][task].labels)
            chosen = rows[np.arange(len(rows)), [vocab.id(label) for label in internal]]
            np.testing.assert_allclose(chosen, predicted[i][task].scores, atol=2e-3)  # the pooled emissions' marginals
            counts = np.asarray(cache.transitions[task][i], dtype=np.float64)
            assert counts.sum() == pytest.approx(len(example.tokens) - 1, abs=0.05)
    batch = cache.batch([3, 0], width=max(len(examples[3].tokens), len(examples[0].tokens)))
    unary, counts = batch["ner"]
    assert unary.shape[:2] == (2, len(examples[3].tokens) if len(examples[3].tokens) >= len(examples[0].tokens) else len(examples[0].tokens))
    assert unary[1, len(examples[0].tokens):].eq(0).all() and counts.shape == (2, 13, 13)


def test_the_cache_is_reused_for_the_same_key_and_rebuilt_for_another(tiny_pos_model, joint_examples, tmp_path):
    teachers = [load_model(tiny_pos_model)]
    examples = joint_examples[:40]
    key = fingerprint([tiny_pos_model], {"upos": 0}, examples, 1.0)
    assert key != fingerprint([tiny_pos_model], {"upos": 0}, examples, 2.0)
    assert key != fingerprint([tiny_pos_model], {"upos": 0}, examples[:39], 1.0)
    label_examples(teachers, {"upos": 0}, examples, tmp_path / "cache", key=key, progress=False)
    written = (tmp_path / "cache" / "upos.unary.npy").stat().st_mtime_ns
    label_examples(teachers, {"upos": 0}, examples, tmp_path / "cache", key=key, progress=False)
    assert (tmp_path / "cache" / "upos.unary.npy").stat().st_mtime_ns == written
    softer = label_examples(teachers, {"upos": 0}, examples, tmp_path / "cache", temperature=3.0, key=key + "x",
                            progress=False)
    assert softer.meta["temperature"] == 3.0
    sharp = np.asarray(TeacherCache(tmp_path / "cache").unary["upos"], dtype=np.float64).max(1).mean()
    assert not (tmp_path / ".cache.staging").exists()
    label_examples(teachers, {"upos": 0}, examples, tmp_path / "cache", key=key, progress=False)
    assert np.asarray(TeacherCache(tmp_path / "cache").unary["upos"], dtype=np.float64).max(1).mean() > sharp


def test_the_objective_is_the_gold_loss_at_weight_0_and_the_teachers_at_weight_1(tiny_pos_model, tiny_ner_model,
                                                                                 joint_examples, tmp_path):
    teachers = [load_model(tiny_pos_model), load_model(tiny_ner_model)]
    cache = label_examples(teachers, assign_tasks(teachers), joint_examples[:16], tmp_path / "c", progress=False)
    for model, task in ((teachers[0], "upos"), (teachers[1], "ner")):  # each teacher as its own student
        network = model.network.eval()
        batch = model.featurizer.batch(joint_examples[:16])
        with torch.no_grad():
            emissions = network(batch.words, batch.chars, batch.char_index, batch.mask)
        soft = {task: cache.batch(range(16), batch.mask.size(1))[task]}
        tags, has = {task: batch.tags[task]}, {task: batch.has_tags[task]}
        gold = distillation_objective(network, emissions, batch.mask, tags, has, soft, weight=0.0, temperature=1.0)
        torch.testing.assert_close(gold, network.loss({task: emissions[task]}, tags, has, batch.mask))
        taught = distillation_objective(network, emissions, batch.mask, tags, has, soft, weight=1.0, temperature=1.0)
        alone = distillation_objective(network, emissions, batch.mask, {}, {}, soft, weight=0.5, temperature=1.0)
        torch.testing.assert_close(taught, alone)
        # the teacher against its own labels sits at the minimum (Gibbs): any other scores cost more
        noisy = {task: emissions[task] + torch.randn_like(emissions[task]) * 0.5}
        assert 0 < float(taught.detach()) < float(distillation_objective(network, noisy, batch.mask, tags, has, soft, 1.0, 1.0).detach())


def test_a_student_learns_both_tasks_from_two_teachers_without_gold(tiny_pos_model, ner_ensemble, joint_examples,
                                                                    tmp_path):
    """Unlabelled sentences only: what the student knows it learned from the teachers."""
    unlabelled = [Example(e.tokens, {}, e.document) for e in joint_examples[:500]]
    dev = joint_examples[500:]
    result = distill(small_student(epochs=3), [tiny_pos_model, ner_ensemble], unlabelled, dev, tmp_path / "student",
                     progress=False)
    student = load_model(tmp_path / "student")
    assert student.tasks == ["upos", "ner"] and not (tmp_path / "student" / "teachers").exists()
    assert student.config.distill.tasks == {"upos": str(tiny_pos_model), "ner": str(ner_ensemble)}
    assert student.config.context.weight == 0.5  # the NER teacher's
    teacher = load_model(tiny_pos_model)
    tokens = [e.tokens for e in dev]
    mine, theirs = predict(student, tokens, scores=False), predict(teacher, tokens, scores=False)
    agree = np.mean([a == b for p, q in zip(mine, theirs) for a, b in zip(p["upos"].labels, q["upos"].labels)])
    assert agree > 0.6, agree  # far above the most frequent tag's 17%, from the teacher's labels alone
    assert result.metrics["dev"]["upos"]["accuracy"] > 0.3
    assert "Distilled" in (tmp_path / "student" / "README.md").read_text()


def test_teachers_must_supply_every_task_and_know_the_gold_labels(tiny_pos_model, tiny_ner_model, joint_examples,
                                                                  tmp_path):
    config = small_student(epochs=1)
    config.model.tasks = [TaskConfig(name="xpos", kind="tag")]
    with pytest.raises(DistillError, match="no teacher has the task xpos"):
        distill(config, [tiny_pos_model], joint_examples[:20], joint_examples[20:30], tmp_path / "a", progress=False)
    odd = [Example(e.tokens, {"upos": tuple("SPACESHIP" for _ in e.tokens)}) for e in joint_examples[:20]]
    with pytest.raises(DistillError, match="SPACESHIP"):
        distill(small_student(epochs=1), [tiny_pos_model], odd, joint_examples[20:30], tmp_path / "b", progress=False)
    with pytest.raises(DistillError, match="no teacher supplies"):
        distill(small_student(epochs=1), [tiny_pos_model], joint_examples[:20], joint_examples[20:30], tmp_path / "c",
                progress=False)
    assert not (tmp_path / "c").exists()


def test_tagger_distill_on_the_real_corpora_with_unlabelled_text(tiny_pos_model, tiny_ner_model, shared_data,
                                                                 write_head, tmp_path):
    ewt, uner = shared_data / "ud-english-ewt", shared_data / "uner-english-ewt"
    train = [write_head(ewt / "en_ewt-ud-train.conllu", tmp_path / "pos.conllu", 200),
             write_head(uner / "en_ewt-ud-train.iob2", tmp_path / "ner.iob2", 200)]
    dev = [write_head(ewt / "en_ewt-ud-dev.conllu", tmp_path / "pos-dev.conllu", 60),
           write_head(uner / "en_ewt-ud-dev.iob2", tmp_path / "ner-dev.iob2", 60)]
    tweets = (shared_data / "wnut17" / "wnut17train.conll").read_text(encoding="utf-8").split("\n\n")[:80]
    text = tmp_path / "tweets.jsonl"
    text.write_text("".join(json.dumps({"text": " ".join(line.split("\t")[0] for line in block.splitlines())}) + "\n"
                            for block in tweets if block.strip()), encoding="utf-8")
    args = ["distill", "--teacher", tiny_pos_model, "--teacher", tiny_ner_model, "--output", tmp_path / "core",
            "--unlabeled", text, "--cache", tmp_path / "cache", "--epochs", "1", "--quiet",
            "--set", "model.encoder.hidden=32", "--set", "model.word_dim=32", "--set", "distill.weight=0.7"]
    for path in train:
        args += ["--train", path]
    for path in dev:
        args += ["--dev", path]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "200 gold-labelled and" in result.output and "dev upos accuracy" in result.output and "ner F1" in result.output
    config = json.loads((tmp_path / "core" / "config.json").read_text())
    assert config["distill"]["weight"] == 0.7 and config["distill"]["unlabeled"] == [str(text)]
    meta = json.loads((tmp_path / "cache" / "teachers.json").read_text())
    assert meta["sentences"] > 200 and set(meta["tasks"]) == {"upos", "ner"}  # gold and tweets, kept for reuse
    result = CliRunner().invoke(app, [str(a) for a in ["distill", "--teacher", tmp_path / "missing", "--train", train[0],
                                                       "--dev", dev[0], "--output", tmp_path / "x"]])
    assert result.exit_code == 2 and "error:" in result.output and "missing" in result.output


def test_an_interrupted_distillation_resumes_where_it_stopped(tiny_pos_model, joint_examples, tmp_path):
    """Stopped after epoch 1 (Ctrl-C): the teachers' labels and the checkpoint stay, and a rerun
    with resume ends where an uninterrupted run does."""
    pos = [Example(e.tokens, {"upos": e.labels["upos"]}, e.document) for e in joint_examples]
    train_part, dev = pos[:160], pos[500:540]
    config = small_student(epochs=2)
    config.train.schedule = "none"
    reference = distill(config, [tiny_pos_model], train_part, dev, tmp_path / "ref", progress=False)

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(config, [tiny_pos_model], train_part, dev, tmp_path / "run", progress=False, on_epoch=interrupt)
    assert (tmp_path / "run" / CHECKPOINT / "state.json").is_file()
    assert (tmp_path / "run" / "teachers").is_dir()  # the labelling is not lost with the run
    labelled = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "teachers").rglob("*") if p.is_file()}
    epochs, reused = [], []

    def record(entry):
        epochs.append(entry["epoch"])
        reused.append(all(p.stat().st_mtime_ns == t for p, t in labelled.items()))

    resumed = distill(config, [tiny_pos_model], train_part, dev, tmp_path / "run", resume=True, progress=False,
                      on_epoch=record)
    assert epochs == [2] and reused == [True]  # epoch 1 from the checkpoint, the labels from the cache
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2]
    assert resumed.metrics["history"][1]["loss"] == pytest.approx(reference.metrics["history"][1]["loss"], rel=1e-5)
    for (name, a), (_, b) in zip(reference.model.network.state_dict().items(),
                                 resumed.model.network.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not (tmp_path / "run" / "teachers").exists()  # removed once the run ended
    assert "Distilled" in (tmp_path / "run" / "README.md").read_text()
