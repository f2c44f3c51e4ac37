"""`tagger tag` on files with the bundled models: the output bytes of the file job stay those
the code wrote before it was made faster, scores are probabilities, and chunking, errors and
the fast JSONL writer change nothing.

``tests/data/tag-MODEL.jsonl`` were written by ``tagger tag --no-scores`` at commit 5ea170b
(before the file job was rewritten) from ``tests/data/tag-input.jsonl``: 40 EWT test texts,
a multi-sentence text, Unicode and JSON escapes, an integer id, an empty text and blank lines.
Rebuilding a bundled model changes its labels: write its file anew then (same command).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tagger import Tagger
from tagger.data.readers.documents import read_documents
from tagger.inference.output import document_record, jsonl_line
from tagger.inference.tagfiles import tag_file
from tagger.model.directory import is_model_directory

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
INPUT = DATA / "tag-input.jsonl"
LINES = INPUT.read_text(encoding="utf-8").removesuffix("\n").split("\n")  # not splitlines: one text holds U+2028
BUNDLED = sorted(p.name for p in (ROOT / "models").glob("*") if is_model_directory(p) and (DATA / f"tag-{p.name}.jsonl").exists())
EWT_TEST = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-test.conllu"


def tag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server.cli", "tag", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module", params=BUNDLED)
def bundled(request) -> tuple[str, Tagger]:
    return request.param, Tagger.load(ROOT / "models" / request.param)


def test_file_job_writes_the_bytes_it_wrote_before(bundled, tmp_path):
    name, _ = bundled
    result = tag("--model", str(ROOT / "models" / name), "--input", str(INPUT), "--output", str(tmp_path / "out.jsonl"),
                 "--no-scores")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.jsonl").read_bytes() == (DATA / f"tag-{name}.jsonl").read_bytes()


def test_scores_keep_the_labels_and_are_probabilities(bundled, tmp_path):
    name, tagger = bundled
    output = io.StringIO()
    assert tag_file(tagger, read_documents(INPUT), output, scores=True) == len(LINES)
    plain = [json.loads(line) for line in (DATA / f"tag-{name}.jsonl").read_text(encoding="utf-8").split("\n") if line]
    scored = [json.loads(line) for line in output.getvalue().split("\n") if line]
    for before, now in zip(plain, scored, strict=True):
        assert [(t["text"], t["start"], t["end"], t["label"], t.get("labels", {}).keys()) for t in before["tokens"]] == \
            [(t["text"], t["start"], t["end"], t["label"], t.get("labels", {}).keys()) for t in now["tokens"]]
        assert [{k: v for k, v in e.items() if k != "score"} for e in before["entities"]] == \
            [{k: v for k, v in e.items() if k != "score"} for e in now["entities"]]
        scores = [t["score"] for t in now["tokens"]] + [e["score"] for e in now["entities"]]
        scores += [v["score"] for t in now["tokens"] for v in t.get("labels", {}).values()]
        assert all(isinstance(x, float) and 0.0 <= x <= 1.0 for x in scores)


@pytest.mark.parametrize("scores", [False, True])
def test_fast_jsonl_equals_the_record_route_on_the_test_texts(bundled, scores):
    """jsonl_line (from the predictions) writes exactly what json.dumps of document_record
    (from the Document) writes, on every raw text of the EWT test set."""
    from tagger.data.readers import read_conllu

    _, tagger = bundled
    texts = [s.text or " ".join(s.tokens) for s in read_conllu(EWT_TEST, None)]
    texts += [json.loads(line)["text"] for line in LINES]
    tasks = list(tagger.tasks)
    spans = {t for t, kind in tagger.tasks.items() if kind == "span"}
    for i, tagged in enumerate(tagger.predict_documents(texts, scores)):
        expected = json.dumps(document_record(i, tagger.document(tagged), tasks), ensure_ascii=False) + "\n"
        assert jsonl_line(i, tagged, tasks, spans) == expected


def test_chunk_size_changes_nothing(bundled):
    _, tagger = bundled
    outputs = []
    for chunk in (1, 3, 4096):
        handle = io.StringIO()
        tag_file(tagger, read_documents(INPUT), handle, scores=False, chunk_documents=chunk)
        outputs.append(handle.getvalue())
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_bad_line_after_the_first_chunk_fails_with_its_line_and_writes_nothing(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(LINES[:7] + ['{"id": 8, "txt": "no text field"}'] + LINES[7:]) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    result = tag("--model", str(ROOT / "models" / "en-pos"), "--input", str(source), "--output", str(target), "--batch", "3")
    assert result.returncode == 2
    assert f"{source}:8" in result.stderr and "string 'text'" in result.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


def test_scores_are_written_as_json_dumps_writes_them_even_when_not_finite():
    from tagger.inference.output import _numbers

    for values in ([0.5, 1.0, 1e-300, 0.1 + 0.2], [0.25, float("nan")], [float("inf"), float("-inf")]):
        assert _numbers(values, len(values)) == [json.dumps(x) for x in values]
    assert _numbers(None, 3) == ["null"] * 3
