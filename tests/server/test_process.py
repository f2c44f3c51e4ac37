"""`tagger serve` as a real process: startup, the client CLI, SIGTERM while requests are in flight."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from server.cli import app
from server.client import TaggerClient

from .conftest import free_port, server_process

TAGGER = [sys.executable, "-m", "server.cli"]

@pytest.fixture()
def process(models_dir, tmp_path):
    with server_process(models_dir, tmp_path) as running:
        yield running


def test_sigterm_lets_in_flight_requests_finish(process):
    proc, address, log = process
    text = "The quick brown fox jumps over the lazy dog in New York . " * 400
    with TaggerClient(address, timeout=60) as client, concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client.tag, text, request_id=str(i)) for i in range(16)]
        time.sleep(0.3)  # requests are in flight
        proc.send_signal(signal.SIGTERM)
        responses = [f.result(timeout=60) for f in futures]
        assert sorted(r.id for r in responses) == sorted(str(i) for i in range(16))
        assert all(len(r.sentences) > 0 for r in responses)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(grpc.RpcError) as error:
            client.tag("After shutdown .", timeout=3)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any("draining" in line["message"] for line in lines)
    assert lines[-1]["message"] == "stopped"


def test_client_cli_tag_and_tag_file(process, models_dir, tmp_path, shared_data):
    _, address, _ = process
    runner = CliRunner()
    result = runner.invoke(app, ["client", "tag", "--server", address, "--text", "Angela Merkel visited Paris ."])
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)
    assert [t["text"] for t in response["sentences"][0]["tokens"]] == ["Angela", "Merkel", "visited", "Paris", "."]

    texts = [f"Line {i} about Berlin ." if i % 10 else "" for i in range(300)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"doc{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["client", "tag-file", "--server", address, "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"doc{i}" for i in range(300)]
    for record, text in zip(records, texts):
        assert all(text[t["start"]:t["end"]] == t["text"] for t in record["tokens"])
        assert bool(record["tokens"]) == bool(text)
        assert all(set(t["labels"]) == {"upos", "ner"} for t in record["tokens"])

    conllu = tmp_path / "dev.conllu"
    blocks = (shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu").read_text().split("\n\n")[:25]
    conllu.write_text("\n\n".join(blocks) + "\n\n")
    out = tmp_path / "out.conllu"
    result = runner.invoke(app, ["client", "tag-file", "--server", address, "--input", str(conllu),
                                 "--output", str(out), "--output-format", "conllu"])
    assert result.exit_code == 0, result.output
    from tagger.data.readers import read_conllu
    gold, tagged = list(read_conllu(conllu)), list(read_conllu(out))
    assert [s.sent_id for s in tagged] == [s.sent_id for s in gold]
    assert [s.tokens for s in tagged] == [s.tokens for s in gold]
    assert all("ner=" in row[9] for s in tagged for row in s.rows)
    from tagger.data.corpus import document_ids
    from tagger.inference.predict import tag_corpus
    from tagger.model.directory import load_model
    # a document's sentences go in one request (for document context), split back per sentence
    expected = tag_corpus(load_model(models_dir / "ner"), [s.tokens for s in gold], "ner", document_ids(gold))
    assert [[row[9].split("ner=")[1].split("|")[0] for row in s.rows] for s in tagged] == expected


def test_client_cli_reports_errors_and_requests_are_logged(process):
    _, address, log = process
    result = CliRunner().invoke(app, ["client", "tag", "--server", address, "--text", "x", "--model", "missing"])
    assert result.exit_code == 1
    assert "NOT_FOUND" in result.output and "no model 'missing'" in result.output
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["message"] == "rpc"]
    assert {"method": "Tag", "code": "NOT_FOUND"}.items() <= requests[-1].items()
    assert requests[-1]["level"] == "debug" and requests[-1]["ms"] >= 0


def test_serve_refuses_bad_settings(tmp_path):
    result = subprocess.run([*TAGGER, "serve", "--models", str(tmp_path / "none"), "--port", str(free_port()),
                             "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "TAGGER_LOG_LEVEL": "info"})
    assert result.returncode == 2
    assert "no such models directory" in result.stderr


def test_sigkill_and_restart_keep_jobs_corpora_and_versions_and_list_nothing_half_written(models_dir, tmp_path,
                                                                                          shared_data):
    import threading

    from tagger_proto.v1 import tagger_pb2 as pb

    blocks = (shared_data / "uner-english-ewt" / "en_ewt-ud-train.iob2").read_text().split("\n\n")
    corpus = tmp_path / "kept.iob2"
    corpus.write_text("\n\n".join(blocks[:300]) + "\n\n")
    with server_process(models_dir, tmp_path, "s") as (proc, address, _):
        with TaggerClient(address, timeout=30) as client:
            assert client.upload("kept", corpus).sentences == 300
            job = client.start_training("kept", "kept", "victim", {"train.epochs": "200", "model.encoder.hidden": "32"})
            for _ in range(240):
                if client.training_stub.GetJob(pb.GetJobRequest(id=job.id), timeout=10).state == "RUNNING":
                    break
                time.sleep(0.25)
            versions_before = [(v.name, v.version, v.active) for v in client.model_versions().versions]

            def slow_chunks():  # an upload still arriving when the server dies
                yield pb.CorpusChunk(name="half", format=pb.CorpusFormat(), data=corpus.read_bytes()[:20_000])
                time.sleep(30)
                yield pb.CorpusChunk(data=b"")

            failed = []
            uploader = threading.Thread(target=lambda: failed.append(
                _expect_rpc_error(lambda: client.training_stub.UploadCorpus(slow_chunks(), timeout=60))))
            uploader.start()
            time.sleep(1.5)
            workers = _children(proc.pid)
            assert workers, "the training worker runs"
            proc.kill()  # SIGKILL: no drain, no clean-up
            proc.wait()
            uploader.join(60)
            assert failed == [grpc.StatusCode.UNAVAILABLE]
            for _ in range(240):  # the orphaned worker stops at its next progress report
                if not any(_running(pid) for pid in workers):
                    break
                time.sleep(0.25)
            else:
                pytest.fail(f"training workers {workers} outlived their server")
    data = tmp_path / "s-data"
    assert any(p.name.startswith(".upload-") for p in (data / "corpora").iterdir())  # what the kill left behind

    with server_process(models_dir, tmp_path, "s") as (_, address, _):
        with TaggerClient(address, timeout=30) as client:
            jobs = {j.id: (j.state, j.error) for j in client.jobs().jobs}
            assert jobs == {job.id: ("FAILED", "interrupted by a server restart")}
            assert [(v.name, v.version, v.active) for v in client.model_versions().versions] == versions_before
            assert sorted(p.name for p in (data / "corpora").iterdir()) == ["kept"]  # the half upload is gone
            assert not list((data / "models").glob("*/.incoming-*"))
            again = client.start_training("kept", "kept", "victim", {"train.epochs": "1", "model.encoder.hidden": "32"})
            assert again.state == "QUEUED"  # the kept corpus is whole and usable
            assert client.tag("Paris is big .").sentences


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # zombies have ended
    except OSError:
        return False


def _expect_rpc_error(call) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return None


def test_client_tag_file_sends_a_document_per_request_to_a_context_model(models_dir, tmp_path, shared_data):
    from tagger.data.corpus import document_ids
    from tagger.data.readers import load_corpus
    from tagger.inference.predict import tag_corpus
    from tagger.model.artifact import save_model
    from tagger.model.directory import load_model

    model = load_model(models_dir / "ner")
    model.config = model.config.with_context(weight=1.0)
    served = tmp_path / "served"
    save_model(model, served / "ner")
    data = tmp_path / "dev.iob2"
    blocks = (shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2").read_text().split("\n\n")[:300]
    data.write_text("\n\n".join(blocks) + "\n\n")
    gold = load_corpus(data, kind="span").sentences
    out = tmp_path / "out.conll"
    with server_process(served, tmp_path) as (_, address, _):
        result = CliRunner().invoke(app, ["client", "tag-file", "--server", address, "--input", str(data),
                                          "--output", str(out), "--output-format", "conll", "--model", "ner"])
    assert result.exit_code == 0, result.output
    tagged = [[line.split("\t")[-1] for line in block.splitlines() if not line.startswith("#")]
              for block in out.read_text().strip().split("\n\n")]
    tokens = [s.tokens for s in gold]
    assert tagged == tag_corpus(model, tokens, "ner", document_ids(gold))
    assert tagged != tag_corpus(model, tokens, "ner")  # sentence by sentence would differ
