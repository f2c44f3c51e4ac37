"""Model directories: round trip, fp16, and refusal of every corrupt or crafted artifact."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from tagger.artifact import ArtifactError, load_model, save_model
from tagger.batching import Example
from tagger.predict import predict


@pytest.fixture()
def model_dir(tiny_pos_model, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(tiny_pos_model, directory)
    return directory


def test_round_trip_and_half_precision(model_dir, tmp_path, ewt_sentences):
    model = load_model(model_dir)
    sentences = [s.tokens for s in ewt_sentences["dev"][:30]]
    save_model(model, tmp_path / "copy")
    save_model(model, tmp_path / "half", half=True)
    original = predict(model, sentences)
    copy = predict(load_model(tmp_path / "copy"), sentences)
    half = predict(load_model(tmp_path / "half"), sentences)
    assert [p["upos"].scores for p in original] == [p["upos"].scores for p in copy]
    agree = sum(a == b for p, q in zip(original, half) for a, b in zip(p["upos"].labels, q["upos"].labels))
    assert agree / sum(map(len, sentences)) > 0.99
    assert (tmp_path / "half" / "weights.safetensors").stat().st_size < 0.6 * (tmp_path / "copy" / "weights.safetensors").stat().st_size
    batch = model.featurizer.batch([Example(sentences[0])], with_labels=False)
    half_model = load_model(tmp_path / "half")
    a = model.network(batch.words, batch.chars, batch.char_index, batch.mask)["upos"]
    b = half_model.network(batch.words, batch.chars, batch.char_index, batch.mask)["upos"]
    assert torch.allclose(a, b, atol=0.05)


def corrupt(directory, how):
    weights = directory / "weights.safetensors"
    if how == "missing directory":
        shutil.rmtree(directory)
    elif how == "missing weights":
        weights.unlink()
    elif how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "garbage weights":
        weights.write_bytes(b"\x00\x01garbage" * 100)
    elif how == "missing tensor":
        state = load_model(directory).network.state_dict()
        state.pop("heads.upos.bias")
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    elif how == "wrong shape":
        config = json.loads((directory / "config.json").read_text())
        config["model"]["encoder"]["hidden"] += 1
        (directory / "config.json").write_text(json.dumps(config))
    elif how == "nan weight":
        state = load_model(directory).network.state_dict()
        state["heads.upos.bias"][0] = float("nan")
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    elif how == "config not json":
        (directory / "config.json").write_text("{not json")
    elif how == "config unknown field":
        config = json.loads((directory / "config.json").read_text())
        config["model"]["surprise"] = 1
        (directory / "config.json").write_text(json.dumps(config))
    elif how == "labels do not match":
        (directory / "labels.json").write_text(json.dumps({"ner": ["O"]}))
    elif how == "vocab missing":
        (directory / "vocab.json").unlink()


@pytest.mark.parametrize("how, message", [
    ("missing directory", "not a model directory"),
    ("missing weights", "weights.safetensors: missing"),
    ("truncated weights", "corrupt or truncated"),
    ("garbage weights", "corrupt or truncated"),
    ("missing tensor", "missing ['heads.upos.bias']"),
    ("wrong shape", "has shape"),
    ("nan weight", "NaN or infinite"),
    ("config not json", "config.json: not valid JSON"),
    ("config unknown field", "invalid config"),
    ("labels do not match", "does not match the config"),
    ("vocab missing", "vocab.json: missing"),
])
def test_bad_artifacts_are_refused(model_dir, how, message):
    corrupt(model_dir, how)
    with pytest.raises(ArtifactError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_model(model_dir)


class _Payload:
    """Unpickling this would run code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_a_pickle_in_place_of_weights_is_refused_without_running_it(model_dir, tmp_path, kind):
    marker = tmp_path / "code-ran"
    weights = model_dir / "weights.safetensors"
    if kind == "pickle":
        weights.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"weights": _Payload(marker)}, weights)
    assert not marker.exists()
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        load_model(model_dir)
    assert not marker.exists()
