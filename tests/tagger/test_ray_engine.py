"""`tagger tag --engine ray`: a local Ray (2 CPUs) over several files gives what `tagger tag` gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagger.cli import app
from tagger.data.corpus import CorpusError
from tagger.data.readers import read_conllu
from tagger.engines.ray_engine import RayEngineError, input_files, read_shards, split_documents

pytest.importorskip("ray")
TAGGER = Path(sys.executable).parent / "tagger"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir) -> Path:
    """Three files of raw EWT test sentences: two plain-text, one JSONL with string ids, in a subfolder."""
    texts = [s.text for s in read_conllu(data_dir / "ud-english-ewt" / "en_ewt-ud-test.conllu")][:240]
    directory = tmp_path_factory.mktemp("ray-inputs")
    (directory / "news").mkdir()
    (directory / "a.txt").write_text("\n".join(texts[:80]) + "\n", encoding="utf-8")
    (directory / "news" / "b.jsonl").write_text(
        "".join(json.dumps({"id": f"b-{i}", "text": t}) + "\n" for i, t in enumerate(texts[80:160])), encoding="utf-8")
    (directory / "c.txt").write_text("\n".join(texts[160:]) + "\n\n", encoding="utf-8")  # an empty last document
    return directory


def test_ray_output_matches_tagger_tag_file_by_file(inputs, tmp_path):
    """On the bundled default, en-core: three tasks from one model, with document context on
    (each input line is one document, here one EWT sentence)."""
    model = ROOT / "models" / "en-core"
    output = tmp_path / "out"
    done = subprocess.run([str(TAGGER), "tag", "--engine", "ray", "--model", str(model), "--input", str(inputs),
                           "--output", str(output), "--num-actors", "2"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tagged 241 documents from 3 files" in done.stderr
    by_file = read_shards(output)
    assert sorted(by_file) == input_files(inputs)
    runner = CliRunner()
    for file, records in by_file.items():
        expected_path = tmp_path / (Path(file).name + ".jsonl")
        result = runner.invoke(app, ["tag", "--model", str(model), "--input", file, "--output", str(expected_path)])
        assert result.exit_code == 0, result.output
        expected = [json.loads(line) for line in expected_path.read_text(encoding="utf-8").splitlines()]
        assert [r["index"] for r in records] == list(range(len(expected)))  # order within the file kept
        assert [r["id"] for r in records] == [e["id"] for e in expected]  # ids kept
        for got, want in zip(records, expected):
            assert [(t["text"], t["start"], t["end"], t["label"]) for t in got["tokens"]] == \
                   [(t["text"], t["start"], t["end"], t["label"]) for t in want["tokens"]]
            assert [(e["start"], e["end"], e["label"]) for e in got["entities"]] == \
                   [(e["start"], e["end"], e["label"]) for e in want["entities"]]
            assert [t["score"] for t in got["tokens"]] == pytest.approx([t["score"] for t in want["tokens"]], abs=1e-4)
            assert [{task: v["value"] for task, v in t["labels"].items()} for t in got["tokens"]] == \
                   [{task: v["value"] for task, v in t["labels"].items()} for t in want["tokens"]]
    assert by_file[str((inputs / "news" / "b.jsonl").resolve())][0]["id"] == "b-0"
    assert sum(len(r["entities"]) for rs in by_file.values() for r in rs) > 0
    first = next(r for rs in by_file.values() for r in rs if r["tokens"])
    assert set(first["tokens"][0]["labels"]) == {"upos", "xpos", "ner"}


def test_inputs_are_files_directories_or_globs(inputs):
    assert len(input_files(inputs)) == 3
    assert input_files(inputs / "a.txt") == [str((inputs / "a.txt").resolve())]
    assert input_files(f"{inputs}/*.txt") == [str((inputs / n).resolve()) for n in ("a.txt", "c.txt")]
    with pytest.raises(RayEngineError, match="no input files"):
        input_files(inputs / "missing-*.txt")


def test_a_bad_jsonl_line_names_its_file_and_line():
    row = {"path": "docs.jsonl", "bytes": b'{"id": 1, "text": "fine"}\n{"id": 2}\n'}
    with pytest.raises(CorpusError, match="docs.jsonl:2"):
        split_documents(row)
    rows = split_documents({"path": "plain.txt", "bytes": "One.\nTwo é.\n".encode()})
    assert [(r["index"], json.loads(r["id"]), r["text"]) for r in rows] == [(0, 1, "One."), (1, 2, "Two é.")]


def test_ray_engine_refuses_bad_arguments_before_starting_ray(inputs, tiny_ner_model, tmp_path):
    runner = CliRunner()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["tag", "--engine", "ray", "--model", str(tiny_ner_model), "--input", str(inputs),
                                 "--output", str(taken)])
    assert result.exit_code == 2 and "not an empty directory" in result.output
    assert (taken / "keep.jsonl").read_text() == "{}\n"  # nothing there is touched
    result = runner.invoke(app, ["tag", "--engine", "ray", "--model", str(tiny_ner_model), "--input", str(tmp_path / "none"),
                                 "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no input files" in result.output
    result = runner.invoke(app, ["tag", "--engine", "ray", "--model", str(tiny_ner_model)])
    assert result.exit_code == 2 and "needs --input" in result.output
    result = runner.invoke(app, ["tag", "--engine", "spark", "--model", str(tiny_ner_model)])
    assert result.exit_code == 2 and "--engine must be local or ray" in result.output
