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


@pytest.mark.parametrize("name", ["en-pos", "en-ner"])
def test_worker_processes_write_the_same_bytes(name, tmp_path):
    """Chunks of 3 documents on 2 forked workers: the same file as before, byte for byte
    (en-ner: an ensemble, its members on threads inside each worker)."""
    model = str(ROOT / "models" / name)
    result = tag("--model", model, "--input", str(INPUT), "--output", str(tmp_path / "out.jsonl"), "--no-scores",
                 "--workers", "2", "--batch", "3")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.jsonl").read_bytes() == (DATA / f"tag-{name}.jsonl").read_bytes()
    for workers in ("1", "2"):  # a tokenized corpus, CoNLL-U out
        result = tag("--model", model, "--input", str(EWT_TEST), "--output", str(tmp_path / f"w{workers}.conllu"),
                     "--output-format", "conllu", "--workers", workers, "--batch", "20")
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "w1.conllu").read_bytes() == (tmp_path / "w2.conllu").read_bytes()


def test_workers_read_standard_input_and_write_standard_output():
    source = INPUT.read_bytes()
    result = subprocess.run([sys.executable, "-m", "server.cli", "tag", "--model", str(ROOT / "models" / "en-pos"),
                             "--no-scores", "--workers", "2", "--batch", "5"], input=source, capture_output=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (DATA / "tag-en-pos.jsonl").read_bytes()


def test_worker_scores_are_this_process_scores_up_to_float32_rounding(tmp_path):
    """A worker runs torch on one thread: sums in another order, so a score may differ in its
    last float32 digits from two threads' (as between machines); labels do not."""
    model = str(ROOT / "models" / "en-pos")
    records = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.jsonl"
        result = tag("--model", model, "--input", str(INPUT), "--output", str(out), "--workers", workers, "--batch", "4")
        assert result.returncode == 0, result.stderr
        records[workers] = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert len(records["1"]) == len(records["2"]) == len(LINES)
    for one, two in zip(records["1"], records["2"]):
        assert [(t["text"], t["start"], t["end"], t["label"]) for t in one["tokens"]] == \
            [(t["text"], t["start"], t["end"], t["label"]) for t in two["tokens"]]
        assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(one["tokens"], two["tokens"]))


FAILING_WORKER = """
import io, os, sys
from tagger import Tagger
from tagger.data.readers.documents import read_documents
from tagger.inference import tagfiles

render, parent = tagfiles._Job.render, os.getpid()
def failing(self, chunk):
    if any(doc_id == "ewt-test-10" for run in chunk for doc_id, _, _ in run):
        raise ValueError(f"ewt-test-10 cannot be tagged ({'in a worker' if os.getpid() != parent else 'here'})")
    return render(self, chunk)
tagfiles._Job.render = failing  # the forked workers inherit it

out = io.StringIO()
try:
    tagfiles.tag_file(Tagger.load(sys.argv[1]), read_documents(sys.argv[2]), out, scores=False, chunk_documents=3, workers=2)
except ValueError as error:
    print(f"raised: {error}; written: {out.getvalue().count(chr(10))}")
"""


def test_a_worker_failing_stops_the_job_with_its_error_after_the_chunks_before_it():
    result = subprocess.run([sys.executable, "-c", FAILING_WORKER, str(ROOT / "models" / "en-pos"), str(INPUT)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    # chunks of three: ewt-test-0 to -8 written, the chunk of -9 to -11 failed, nothing after it
    assert result.stdout.strip() == "raised: ewt-test-10 cannot be tagged (in a worker); written: 9"


STUCK_WORKER = """
import sys, time
from tagger.cli import app
from tagger.inference import tagfiles

render = tagfiles._Job.render
def stuck(self, chunk):
    if any(doc_id == 2000 for run in chunk for doc_id, _, _ in run):
        time.sleep(3600)  # a worker that never ends its chunk
    return render(self, chunk)
tagfiles._Job.render = stuck
app(sys.argv[1:])
"""


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def test_ctrl_c_stops_a_job_on_workers_even_with_a_worker_stuck_and_writes_nothing(tmp_path):
    import signal
    import time

    from tagger.data.readers import read_conllu

    texts = [s.text or " ".join(s.tokens) for s in read_conllu(EWT_TEST, None)]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    job = subprocess.Popen([sys.executable, "-c", STUCK_WORKER, "tag", "--model", str(ROOT / "models" / "en-pos"),
                            "--input", str(source), "--output", str(target), "--workers", "2"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(children := _children(job.pid)) < 2 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert len(children) == 2, "the workers did not start"
    time.sleep(8)  # the other worker goes on to the end of the file; the stuck one never will
    assert job.poll() is None, job.communicate()
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 130 and "Traceback" not in stderr, stderr
    assert not target.exists() and list(tmp_path.iterdir()) == [source]
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and pid in _children(job.pid)]
    for pid in children:
        assert not Path(f"/proc/{pid}/stat").exists() or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
