"""The loaded models: name -> (version, Tagger, micro-batcher), guarded by a lock and swapped
as whole objects, so a request holds on to the entry it started with."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger import ArtifactError, Tagger, is_model_directory, weight_files

if TYPE_CHECKING:
    from server.store import ModelStore


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    tagger: Tagger
    path: str
    test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    dev_score: float = 0.0

    @property
    def tasks(self) -> dict[str, str]:
        return self.tagger.tasks


# the defaults of a bundled models directory, the first set that is all there: en-core (one
# distilled model, POS and NER in one pass), else en-pos with the en-ner ensemble
BUNDLED_DEFAULTS = (["en-core"], ["en-pos", "en-ner"])


class UnknownModel(KeyError):
    """A model name the registry does not hold."""


def model_version(directory: Path) -> str:
    """``metrics.json``'s ``version`` if set, else the first 12 hex digits of the weights' SHA-256."""
    try:
        version = json.loads((directory / "metrics.json").read_text()).get("version")
    except (OSError, ValueError):
        version = None
    if version:
        return str(version)
    digest = hashlib.sha256()
    for path in weight_files(directory):  # one file, or one per ensemble member
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def load_entry(name: str, directory: Path, version: str | None = None, backend: str = "torch") -> ModelEntry:
    """Load one model directory (version: given, or derived from the files) for ``backend``
    (see :meth:`Tagger.load`). Raises ArtifactError for a bad one."""
    tagger = Tagger.load(directory, backend)
    tests: dict[str, dict[str, float]] = {}
    dev = []
    try:
        metrics: dict[str, Any] = json.loads((directory / "metrics.json").read_text())
        for task, report in (metrics.get("test") or {}).items():
            tests[task] = {k: float(report[k]) for k in ("accuracy", "precision", "recall", "f1") if k in report}
        dev = [float(r["f1"] if "f1" in r else r["accuracy"]) for r in (metrics.get("dev") or {}).values()]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ModelEntry(name, version or model_version(directory), tagger, str(directory), tests,
                      sum(dev) / len(dev) if dev else 0.0)


def discover(models_dir: Path) -> list[Path]:
    """Model directories directly under ``models_dir`` (a ``config.json`` or an ``ensemble.json``)."""
    if not models_dir.is_dir():
        raise ArtifactError(f"{models_dir}: no such models directory")
    return sorted(p for p in models_dir.iterdir() if is_model_directory(p))


class ModelRegistry:
    """Thread-safe name -> ModelEntry map with a list of default models."""

    def __init__(self, entries: Iterable[ModelEntry] = (), defaults: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._entries: dict[str, ModelEntry] = {e.name: e for e in entries}
        self._defaults = list(defaults)

    @classmethod
    def from_store(cls, store: "ModelStore", defaults: Iterable[str] | None = None,
                   backend: str = "torch") -> "ModelRegistry":
        """Load the active version of every model in the store."""
        entries = []
        for name in store.names():
            version = store.active(name)
            if version is not None:
                entries.append(load_entry(name, store.path(name, version), version, backend))
        return cls._with_defaults(entries, defaults, store.root)

    @classmethod
    def from_directory(cls, models_dir: Path, defaults: Iterable[str] | None = None,
                       backend: str = "torch") -> "ModelRegistry":
        """Load every model under ``models_dir``. Without ``defaults``: the first of
        :data:`BUNDLED_DEFAULTS` that is present (en-core, else en-pos with the en-ner
        ensemble), else every model."""
        entries = [load_entry(p.name, p, backend=backend) for p in discover(models_dir)]
        return cls._with_defaults(entries, defaults, models_dir)

    @classmethod
    def _with_defaults(cls, entries: list[ModelEntry], defaults: Iterable[str] | None, where: Path) -> "ModelRegistry":
        if not entries:
            raise ArtifactError(f"{where}: no model directories found")
        names = {e.name for e in entries}
        if defaults is None:
            chosen = next((list(d) for d in BUNDLED_DEFAULTS if set(d) <= names), sorted(names))
        else:
            chosen = list(defaults)
        missing = [n for n in chosen if n not in names]
        if missing:
            raise ArtifactError(f"default model(s) {', '.join(missing)} not found in {where}")
        return cls(entries, chosen)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._entries

    def get(self, name: str) -> ModelEntry:
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise UnknownModel(name)
        return entry

    def put(self, entry: ModelEntry) -> ModelEntry | None:
        """Swap in ``entry`` for its name; returns the entry it replaced."""
        with self._lock:
            previous = self._entries.get(entry.name)
            self._entries = {**self._entries, entry.name: entry}
        return previous

    @property
    def defaults(self) -> list[str]:
        with self._lock:
            return list(self._defaults)

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.name)
