"""The model store on disk: ``<data dir>/models/<name>/<version>/`` plus an ``ACTIVE`` file
per name. Versions are whole numbers; a version directory appears only complete (copied
into a hidden temp directory, then renamed), so a half-written version is never listed.
The bundled models are seeded as version 1 of their names."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from tagger import is_model_directory
from tagger.data.writers import atomic_write_text

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ACTIVE = "ACTIVE"


class StoreError(ValueError):
    """A bad name, a missing version, or an operation the store refuses."""


def check_name(name: str) -> str:
    """Model and corpus names: lower-case letters, digits, ``._-``; no path tricks."""
    if not NAME.match(name) or ".." in name:
        raise StoreError(f"invalid name {name!r}: use 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
    return name


class ModelStore:
    """Versioned model directories; ``max_versions`` (None: no limit) caps the versions per model."""

    def __init__(self, root: Path, max_versions: int | None = None):
        self.root = Path(root) / "models"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_versions = max_versions

    def check_room(self, name: str) -> None:
        """Refuse a new version of ``name`` when it already has ``max_versions``."""
        count = len(self.versions(name))
        if self.max_versions is not None and count >= self.max_versions:
            raise StoreError(f"model {name} has {count} version{'s' * (count != 1)}, the limit; "
                             "delete an old version first")

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME.match(p.name))

    def versions(self, name: str) -> list[str]:
        directory = self.root / check_name(name)
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if p.is_dir() and p.name.isdigit() and is_model_directory(p)]
        return sorted(found, key=int)

    def path(self, name: str, version: str) -> Path:
        if version not in self.versions(name):
            raise StoreError(f"model {name} has no version {version!r}")
        return self.root / name / version

    def active(self, name: str) -> str | None:
        marker = self.root / check_name(name) / ACTIVE
        try:
            version = marker.read_text().strip()
        except FileNotFoundError:
            return None
        return version if version in self.versions(name) else None

    def set_active(self, name: str, version: str) -> None:
        self.path(name, version)  # must exist
        atomic_write_text(self.root / name / ACTIVE, version + "\n")

    def add(self, name: str, source: Path) -> str:
        """Copy a model directory in as the next version; returns the version."""
        self.check_room(name)
        directory = self.root / check_name(name)
        directory.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=directory))
        try:
            for item in Path(source).iterdir():
                if item.is_file():
                    shutil.copy2(item, temp / item.name)
                elif item.is_dir() and not item.name.startswith("."):  # an ensemble's members
                    shutil.copytree(item, temp / item.name)
            existing = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
            version = str(max(existing, default=0) + 1)
            temp.rename(directory / version)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return version

    def delete(self, name: str, version: str) -> None:
        if self.active(name) == version:
            raise StoreError(f"{name} version {version} is active; activate another version first")
        path = self.path(name, version)
        trash = path.with_name(f".deleted-{version}")
        path.rename(trash)  # unlisted at once, removed after
        shutil.rmtree(trash, ignore_errors=True)

    def seed(self, bundled: Path) -> None:
        """Add each bundled model directory as version 1 of its name, if the name is new."""
        if not bundled.is_dir():
            return
        for source in sorted(bundled.iterdir()):
            if is_model_directory(source) and NAME.match(source.name) and not self.versions(source.name):
                self.set_active(source.name, self.add(source.name, source))

    def clean(self) -> None:
        """Remove what an interrupted write or delete left behind."""
        for leftover in self.root.glob("*/.incoming-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.root.glob("*/.deleted-*"):
            shutil.rmtree(leftover, ignore_errors=True)
