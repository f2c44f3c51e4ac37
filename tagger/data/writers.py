"""Writers for tagged sentences: CoNLL-U, two-column token/label, JSONL.

All write to an open text handle; :func:`atomic_output` gives a handle whose file
appears only when everything was written (temp file + rename), so a failure never leaves
partial output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from tagger.data.corpus import Sentence


def write_conllu(sentences: Iterable[Sentence], handle: IO[str], column: str = "upos") -> None:
    """Write CoNLL-U, filling each sentence's labels into the UPOS or XPOS column.

    Sentences read from CoNLL-U keep their other columns and comments; others get
    ``ID FORM _ LABEL _ _ _ _ _ _`` rows. A sentence with rows but no labels is written
    as its rows stand.
    """
    index = {"upos": 3, "xpos": 4}[column]
    for sentence in sentences:
        if sentence.labels is not None and len(sentence.labels) != len(sentence.tokens):
            raise ValueError(f"{len(sentence.labels)} labels for {len(sentence.tokens)} tokens")
        for comment in sentence.comments:
            handle.write(f"# {comment}\n")
        if not sentence.comments and sentence.text is not None:
            handle.write(f"# text = {sentence.text}\n")
        for i, token in enumerate(sentence.tokens):
            if sentence.rows is not None and len(sentence.rows[i]) == 10:
                row = list(sentence.rows[i])
            else:
                row = [str(i + 1), token] + ["_"] * 8
            if sentence.labels is not None:
                row[index] = sentence.labels[i]
            handle.write("\t".join(row) + "\n")
        handle.write("\n")


def write_columns(sentences: Iterable[Sentence], handle: IO[str]) -> None:
    """Write ``token<TAB>label`` lines, a blank line after each sentence."""
    for sentence in sentences:
        labels = sentence.labels or ("O",) * len(sentence.tokens)
        for token, label in zip(sentence.tokens, labels, strict=True):
            handle.write(f"{token}\t{label}\n")
        handle.write("\n")


def write_jsonl(records: Iterable[dict[str, Any]], handle: IO[str]) -> None:
    """Write one JSON object per line (UTF-8 kept as is)."""
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_output(path: str | Path | None) -> Iterator[IO[str]]:
    """A text handle for ``path`` that is renamed into place only on success; stdout if None."""
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    with _atomic(path, "w") as handle:
        yield handle


@contextlib.contextmanager
def _atomic(path: str | Path, mode: str) -> Iterator[IO]:
    """Write to a temp file beside ``path``; fsync and rename on success, remove on failure."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename."""
    with _atomic(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
