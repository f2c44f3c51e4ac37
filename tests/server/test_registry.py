"""The model registry: discovery, versions, defaults, whole-entry swaps."""

from __future__ import annotations

import shutil

import pytest

from server.registry import ModelRegistry, UnknownModel, load_entry, model_version
from tagger import ArtifactError


def test_defaults(models_dir, tmp_path):
    assert ModelRegistry.from_directory(models_dir).defaults == ["ner", "pos"]  # no bundled pair: every model
    assert ModelRegistry.from_directory(models_dir, ["pos"]).defaults == ["pos"]
    bundled = tmp_path / "bundled"
    for name, source in (("en-pos", "pos"), ("en-ner", "ner"), ("en-joint", "pos")):
        shutil.copytree(models_dir / source, bundled / name)
    assert ModelRegistry.from_directory(bundled).defaults == ["en-pos", "en-ner"]
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
