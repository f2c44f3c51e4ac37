"""Batch tagging of many files on Ray Data: ``tagger tag --engine ray``.

Ray Data reads the input files (plain text, one document per line, or JSONL with ``id`` and
``text``), splits them into documents, tags them in a pool of actors that each load the
model once, and writes JSONL shards. Every output line is the record ``tagger tag`` writes
for that document, plus ``file`` (its input file) and ``index`` (its position in that file,
from 0), and the shards keep the input order. Ray runs locally (``ray.init()``) unless
``RAY_ADDRESS`` names a cluster; there the model directory and the inputs must be readable
at the same paths on every node, and the ``tagger`` package installed.

Ray is an optional extra (``pip install '.[ray]'``): nothing else imports this module.
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

INPUT_SUFFIXES = (".txt", ".text", ".jsonl", ".json")


class RayEngineError(ValueError):
    """Inputs or outputs the Ray engine cannot use."""


def input_files(spec: str | Path) -> list[str]:
    """A file, a directory (its text and JSONL files, recursively) or a glob, sorted."""
    path = Path(spec)
    if path.is_file():
        return [str(path.resolve())]
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES]
    else:
        found = [Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file()]
    if not found:
        raise RayEngineError(f"{spec}: no input files (a file, a directory of {'/'.join(INPUT_SUFFIXES)} files, or a glob)")
    return sorted(str(p.resolve()) for p in found)


def split_documents(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One input file (Ray's ``bytes`` and ``path``) -> one row per document, in file order."""
    from tagger.data.corpus import decode_lines
    from tagger.data.readers.documents import parse_documents

    path = row["path"]
    lines = (line for _, line in decode_lines(io.BytesIO(bytes(row["bytes"])), path))  # as `tagger tag` reads a file
    return [{"file": path, "index": index, "id": json.dumps(doc_id), "text": text}
            for index, (doc_id, text, _) in enumerate(parse_documents(lines, path))]


class TagBatch:
    """A Ray actor's work: the model is loaded once per actor, then each batch is tagged."""

    def __init__(self, model: str, scores: bool, threads: int = 1, backend: str = "torch"):
        import torch

        from tagger.inference.predict import Tagger

        torch.set_num_threads(threads)
        self.tagger = Tagger.load(model, backend)  # type: ignore[arg-type]
        self.tasks = list(self.tagger.tasks)
        self.scores = scores

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from tagger.inference.output import document_record

        documents = self.tagger.tag_texts([str(t) for t in batch["text"]], scores=self.scores)
        lines = []
        for file, index, doc_id, document in zip(batch["file"], batch["index"], batch["id"], documents):
            record = document_record(json.loads(doc_id), document, self.tasks)
            lines.append(json.dumps({**record, "file": str(file), "index": int(index)}, ensure_ascii=False))
        return {"file": batch["file"], "index": batch["index"], "json": lines}


def _jsonl_sink(path: str):
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesSink(BlockBasedFileDatasink):
        """Writes the ``json`` column, one line per row."""

        def __init__(self, directory: str):
            super().__init__(directory, file_format="jsonl")
            self.rows = 0

        def on_write_complete(self, write_result) -> None:  # on the driver, with the totals
            super().on_write_complete(write_result)
            self.rows = write_result.num_rows

        def write_block_to_file(self, block, file) -> None:
            lines = block.to_arrow().column("json").to_pylist()
            file.write("".join(line + "\n" for line in lines).encode("utf-8"))

    return JsonLinesSink(path)


def tag_files(model: str | Path, inputs: str | Path, output: str | Path, num_actors: int = 2,
              scores: bool = True, batch_size: int = 256, backend: str = "torch") -> dict[str, Any]:
    """Tag every document of ``inputs`` into JSONL shards in the directory ``output``
    (``backend`` as for :meth:`tagger.Tagger.load`, in each actor).

    The shards are written into a temporary directory beside ``output`` and moved into
    place at the end, so a failed run leaves no partial output.

    Returns:
        ``{"files": input files, "documents": count, "shards": shard paths}``.
    """
    import ray

    if num_actors < 1:
        raise RayEngineError("--num-actors must be at least 1")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RayEngineError(f"{output}: exists and is not an empty directory")
    from tagger.model.directory import load_model

    load_model(model)  # a bad model fails here, before Ray starts
    files = input_files(inputs)
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting home from a tagging job
        ray.init(include_dashboard=False, configure_logging=False)  # RAY_ADDRESS, if set, names the cluster
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    partial = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)  # exists even when there is nothing to write
    try:
        # reading and splitting are light: they take no CPU slot from the actors that tag
        dataset = (ray.data.read_binary_files(files, include_paths=True, num_cpus=0)
                   .flat_map(split_documents, num_cpus=0)
                   .map_batches(TagBatch, fn_constructor_args=(str(Path(model).resolve()), scores, 1, backend),
                                batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=num_actors),
                                num_cpus=1, batch_format="numpy"))
        sink = _jsonl_sink(str(partial))
        dataset.write_datasink(sink, ray_remote_args={"num_cpus": 0})
        documents = sink.rows
        if output.exists():
            output.rmdir()
        partial.replace(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {"files": files, "documents": documents, "shards": sorted(str(p) for p in output.glob("*.jsonl"))}


def read_shards(directory: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The records of a Ray output directory by input file, each file's in input order."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for shard in sorted(Path(directory).glob("*.jsonl")):
        for line in shard.open(encoding="utf-8"):
            record = json.loads(line)
            by_file.setdefault(record["file"], []).append(record)
    return {f: sorted(records, key=lambda r: r["index"]) for f, records in by_file.items()}
