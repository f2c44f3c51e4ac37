"""Uploaded corpora: ``<data dir>/corpora/<name>/corpus.txt`` with ``meta.json`` (format,
checksum, counts). A corpus is validated with the tagger's readers before it is stored;
the directory appears whole (temp directory + rename) or not at all."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from server.store import StoreError, check_name
from tagger.config import CorpusFormat
from tagger.data.readers import load_corpus


class CorpusStore:
    def __init__(self, root: Path, max_bytes: int, max_corpora: int | None = None):
        self.root = Path(root) / "corpora"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_corpora = max_bytes, max_corpora

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def path(self, name: str) -> Path:
        path = self.root / check_name(name) / "corpus.txt"
        if not path.is_file():
            raise StoreError(f"no corpus {name!r}; upload it first")
        return path

    def meta(self, name: str) -> dict[str, Any]:
        self.path(name)
        return json.loads((self.root / name / "meta.json").read_text())

    def format(self, name: str) -> CorpusFormat:
        return CorpusFormat.model_validate(self.meta(name)["format"])

    def begin(self, name: str) -> "Upload":
        check_name(name)
        if (self.root / name).exists():
            raise StoreError(f"corpus {name!r} exists; corpora are immutable, choose a new name")
        if self.max_corpora is not None and len(self.names()) >= self.max_corpora:
            raise StoreError(f"the limit of {self.max_corpora} stored corpora is reached")
        return Upload(self, name)

    def clean(self) -> None:
        for leftover in self.root.glob(".upload-*"):
            shutil.rmtree(leftover, ignore_errors=True)


class Upload:
    """Bytes arrive in chunks into a temp file; ``finish`` validates and publishes."""

    def __init__(self, store: CorpusStore, name: str):
        self.store, self.name = store, name
        self.directory = Path(tempfile.mkdtemp(prefix=".upload-", dir=store.root))
        self.file = open(self.directory / "corpus.txt", "wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.store.max_bytes:
            raise StoreError(f"corpus larger than the {self.store.max_bytes:,}-byte limit")
        self.digest.update(data)
        self.file.write(data)

    def finish(self, fmt: CorpusFormat) -> dict[str, Any]:
        """Validate (raises CorpusError with file line numbers) and store; returns the meta."""
        self.file.close()
        corpus = load_corpus(self.directory / "corpus.txt", fmt)
        meta = {"name": self.name, "sha256": self.digest.hexdigest(), "size": self.size,
                "sentences": len(corpus.sentences), "tokens": sum(len(s.tokens) for s in corpus.sentences),
                "kind": corpus.kind, "labels": corpus.labels, "format": fmt.model_dump()}
        (self.directory / "meta.json").write_text(json.dumps(meta))
        target = self.store.root / self.name
        if target.exists():
            raise StoreError(f"corpus {self.name!r} was uploaded meanwhile")
        self.directory.rename(target)
        return meta

    def abort(self) -> None:
        self.file.close()
        shutil.rmtree(self.directory, ignore_errors=True)
