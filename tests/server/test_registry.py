"""The model registry: discovery, versions, defaults, whole-entry swaps."""

from __future__ import annotations

import shutil

import pytest

from server.registry import ModelRegistry, UnknownModel, load_entry, model_version
from tagger import ArtifactError
from tagger.inference.runtime import onnx_available


def test_defaults(models_dir, tmp_path):
    assert ModelRegistry.from_directory(models_dir).defaults == ["ner", "pos"]  # no bundled pair: every model
    assert ModelRegistry.from_directory(models_dir, ["pos"]).defaults == ["pos"]
    bundled = tmp_path / "bundled"
    for name, source in (("en-pos", "pos"), ("en-ner", "ner"), ("en-joint", "pos")):
        shutil.copytree(models_dir / source, bundled / name)
    assert ModelRegistry.from_directory(bundled).defaults == ["en-pos", "en-ner"]
    shutil.copytree(models_dir / "pos", bundled / "en-core")  # the one-pass default wins when bundled
    assert ModelRegistry.from_directory(bundled).defaults == ["en-core"]
    with pytest.raises(ArtifactError, match="default model"):
        ModelRegistry.from_directory(models_dir, ["missing"])


def test_versions_and_swaps(models_dir):
    registry = ModelRegistry.from_directory(models_dir)
    entry = registry.get("pos")
    assert entry.version == model_version(models_dir / "pos") and len(entry.version) == 12
    assert entry.test_metrics == {}  # the tiny models carry no test scores
    replacement = load_entry("pos", models_dir / "ner")
    registry.put(replacement)
    assert registry.get("pos") is replacement and entry.tagger is not replacement.tagger
    with pytest.raises(UnknownModel):
        registry.get("nope")


def test_empty_or_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="no model directories"):
        ModelRegistry.from_directory(tmp_path)
    with pytest.raises(ArtifactError, match="no such models directory"):
        ModelRegistry.from_directory(tmp_path / "absent")


@pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed")
def test_the_backend_setting_reaches_every_model_and_keeps_its_labels(models_dir):
    text = "Barack Obama visited Paris last week. Apple opened a store in Berlin."

    def labels(entry):
        document = entry.tagger.tag(text)
        return [[{task: label.value for task, label in token.labels.items()} for token in sentence.tokens]
                for sentence in document.sentences]

    torch_registry = ModelRegistry.from_directory(models_dir, backend="torch")
    onnx_registry = ModelRegistry.from_directory(models_dir, backend="onnx")
    for name in ("pos", "ner"):
        assert torch_registry.get(name).tagger.backend == "torch"
        assert onnx_registry.get(name).tagger.backend == "onnx"
        assert labels(onnx_registry.get(name)) == labels(torch_registry.get(name))
    assert load_entry("pos", models_dir / "pos", backend="auto").tagger.backend == "onnx"  # the dev extra has it
    assert load_entry("pos", models_dir / "pos").tagger.backend == "torch"  # the default


def test_the_int8_backend_setting_reaches_every_model(models_dir):
    from server.settings import ServerSettings

    assert ServerSettings(backend="int8").backend == "int8"
    registry = ModelRegistry.from_directory(models_dir, backend="int8")
    for entry in registry.entries():
        assert entry.tagger.backend == "int8"
        assert entry.tagger.tag("Barack Obama visited Paris.").sentences[0].tokens


def test_an_ensemble_directory_is_discovered_stored_and_served(models_dir, tiny_ner_model_seed2, tmp_path):
    from server.store import ModelStore
    from tagger.model.directory import load_model
    from tagger.model.ensemble import save_ensemble

    bundled = tmp_path / "bundled"
    shutil.copytree(models_dir / "pos", bundled / "pos")
    save_ensemble([load_model(models_dir / "ner"), load_model(tiny_ner_model_seed2)], bundled / "ner-ensemble")
    registry = ModelRegistry.from_directory(bundled)
    assert registry.defaults == ["ner-ensemble", "pos"]
    entry = registry.get("ner-ensemble")
    assert len(entry.tagger.model.members) == 2
    document = entry.tagger.tag("Barack Obama visited Paris last week.")
    assert [t.text for t in document.sentences[0].tokens][:2] == ["Barack", "Obama"]
    # the version covers every member's weights
    before = model_version(bundled / "ner-ensemble")
    member = bundled / "ner-ensemble" / "member-2" / "weights.safetensors"
    member.write_bytes(member.read_bytes()[:-1] + b"\0")
    assert model_version(bundled / "ner-ensemble") != before
    save_ensemble([load_model(models_dir / "ner"), load_model(tiny_ner_model_seed2)], bundled / "ner-ensemble")
    # the store copies the members too, and lists the version
    store = ModelStore(tmp_path / "data")
    store.seed(bundled)
    assert store.versions("ner-ensemble") == ["1"] and store.active("ner-ensemble") == "1"
    stored = store.path("ner-ensemble", "1")
    assert (stored / "member-2" / "weights.safetensors").is_file()
    assert model_version(stored) == model_version(bundled / "ner-ensemble")
    assert ModelRegistry.from_store(store, ["pos"]).get("ner-ensemble").tagger.tag("Paris").sentences
