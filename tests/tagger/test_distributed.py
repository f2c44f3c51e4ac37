"""Data-parallel training: sharding rules, and `tagger train` under torchrun with 2 CPU processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tagger.data.batching import Example
from tagger.data.readers import read_conllu
from tagger.model.directory import load_model
from tagger.training.distributed import Context, shard
from tagger.training.train import evaluate_model


def test_shard_gives_every_rank_the_same_number_of_distinct_items():
    items = list(range(11))
    parts = [shard(items, Context(rank, 3)) for rank in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    flat = [i for p in parts for i in p]
    assert len(set(flat)) == 9 and set(flat) <= set(items)


def test_shard_is_identity_without_distribution_and_refuses_too_few_batches():
    assert shard([1, 2, 3], Context()) == [1, 2, 3]
    with pytest.raises(ValueError, match="2 batches cannot be shared by 4 processes"):
        shard([1, 2], Context(0, 4))


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_the_group_waits_hours_by_default_and_the_environment_sets_it(monkeypatch):
    from datetime import timedelta

    from tagger.training.distributed import group_timeout

    monkeypatch.delenv("TAGGER_DIST_TIMEOUT_MINUTES", raising=False)
    assert group_timeout() == timedelta(hours=6)  # rank 0 labels a distillation's text while the others wait
    monkeypatch.setenv("TAGGER_DIST_TIMEOUT_MINUTES", "90")
    assert group_timeout() == timedelta(minutes=90)
    for bad in ("0", "-5", "soon", "nan", "inf"):
        monkeypatch.setenv("TAGGER_DIST_TIMEOUT_MINUTES", bad)
        with pytest.raises(ValueError, match="TAGGER_DIST_TIMEOUT_MINUTES must be a positive number"):
            group_timeout()
    # setup() hands it to the process group
    from tagger.training import distributed

    joined = {}
    monkeypatch.setenv("TAGGER_DIST_TIMEOUT_MINUTES", "90")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: joined.update(kwargs))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.setup().rank == 1 and joined["timeout"] == timedelta(minutes=90)


def test_tagger_train_under_torchrun_with_two_processes(tmp_path, data_dir, write_head):
    ewt = data_dir / "ud-english-ewt"
    train = write_head(ewt / "en_ewt-ud-train.conllu", tmp_path / "train.conllu", 600)
    dev = write_head(ewt / "en_ewt-ud-dev.conllu", tmp_path / "dev.conllu", 150)
    output = tmp_path / "model"
    tagger = shutil.which("tagger", path=str(Path(sys.executable).parent))
    assert tagger, "the tagger console script is installed beside python"
    command = [*_torchrun(), "--standalone", "--nproc-per-node", "2", "--no-python", tagger, "train",
               "--train", str(train), "--dev", str(dev), "--output", str(output), "--epochs", "4", "--quiet",
               "--set", "train.batch_size=16", "--set", "train.lr=0.01", "--set", "model.encoder.hidden=64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved ") == 1, done.stdout  # rank 0 alone reports

    assert not (output / "checkpoint").exists()
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["epochs_run"] == 4 and len(metrics["history"]) == 4
    # each rank trained on half the batches of an epoch: loss falls, dev accuracy rises
    history = metrics["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    model = load_model(output)  # loads like any other model
    examples = [Example(s.tokens, {"upos": s.labels}) for s in read_conllu(dev)]
    accuracy = evaluate_model(model, examples)["upos"]["accuracy"]
    assert accuracy == pytest.approx(metrics["dev"]["upos"]["accuracy"])
    assert accuracy > 0.6  # the majority tag (NOUN) is under 0.2


def test_tagger_distill_under_torchrun_with_two_processes(tmp_path, data_dir, write_head, tiny_pos_model):
    """Rank 0 has the teacher label the text once; both ranks train on the cache."""
    ewt = data_dir / "ud-english-ewt"
    train = write_head(ewt / "en_ewt-ud-train.conllu", tmp_path / "train.conllu", 400)
    dev = write_head(ewt / "en_ewt-ud-dev.conllu", tmp_path / "dev.conllu", 100)
    output, cache = tmp_path / "student", tmp_path / "cache"
    tagger = shutil.which("tagger", path=str(Path(sys.executable).parent))
    command = [*_torchrun(), "--standalone", "--nproc-per-node", "2", "--no-python", tagger, "distill",
               "--teacher", str(tiny_pos_model), "--train", str(train), "--dev", str(dev), "--output", str(output),
               "--cache", str(cache), "--epochs", "2", "--set", "train.batch_size=16",
               "--set", "train.lr=0.01", "--set", "model.encoder.hidden=32"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved ") == 1, done.stdout
    assert done.stdout.count("labelling 400 sentences") == 1  # rank 0 only
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs_run"] == 2
    assert json.loads((cache / "teachers.json").read_text())["sentences"] == 400
    assert load_model(output).config.distill.tasks == {"upos": str(tiny_pos_model)}
