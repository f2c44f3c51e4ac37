"""Retraining through the service, end to end: upload real corpus slices with an entity type
the bundled models never saw, train in a worker process, watch progress, tag with the new
version, cancel, restart, and refuse bad corpora and bad tokens."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import grpc
import pytest
from typer.testing import CliRunner

from server.app import build_server
from server.cli import app as cli_app
from server.client import TaggerClient
from server.registry import ModelRegistry
from server.settings import ServerSettings
from server.store import ModelStore
from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

FAST = {"train.epochs": "2", "model.encoder.hidden": "32", "model.word_dim": "32", "model.char.hidden": "16",
        "model.max_vectors": "20000"}  # small models: the recipe for 400 sentences would keep every GloVe word


@contextmanager
def training_server(loop_thread, models_dir, data_dir, **overrides):
    settings = ServerSettings(port=0, models=models_dir, data_dir=data_dir, default_models=["pos"],
                              training_threads=1, **overrides)
    store = ModelStore(data_dir, settings.max_versions)
    store.seed(models_dir)
    running = loop_thread.run(build_server(settings, ModelRegistry.from_store(store, ["pos"]), store=store))
    try:
        yield running
    finally:
        loop_thread.run(running.stop(0))


def corpus_bytes(shared_data, split: str, sentences: int) -> bytes:
    """Universal NER sentences with LOC renamed PLACE: a type no bundled model has."""
    blocks = (shared_data / "uner-english-ewt" / f"en_ewt-ud-{split}.iob2").read_text().split("\n\n")[:sentences]
    return ("\n\n".join(blocks) + "\n\n").replace("-LOC\t", "-PLACE\t").encode()


def upload(stub, name, data, metadata=None, chunk=64 * 1024):
    def chunks():
        yield pb.CorpusChunk(name=name, format=pb.CorpusFormat(), data=data[:chunk])
        for start in range(chunk, len(data), chunk):
            yield pb.CorpusChunk(data=data[start:start + chunk])
    return stub.UploadCorpus(chunks(), timeout=60, metadata=metadata)


def watch(stub, job_id):
    return list(stub.WatchJob(pb.GetJobRequest(id=job_id), timeout=300))


def test_upload_train_watch_tag_cancel_restart(loop_thread, models_dir, tmp_path, shared_data):
    data_dir = tmp_path / "data"
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            corpus = upload(training, "places-train", corpus_bytes(shared_data, "train", 400))
            assert (corpus.sentences, corpus.kind) == (400, "span")
            assert {"B-PLACE", "I-PLACE", "B-PER"} <= set(corpus.labels) and len(corpus.sha256) == 64
            upload(training, "places-dev", corpus_bytes(shared_data, "dev", 80))

            failures, stop = [], threading.Event()

            def keep_tagging():  # tagging goes on, unharmed, while a worker process trains
                with TaggerClient(f"127.0.0.1:{running.port}") as client:
                    while not stop.is_set():
                        try:
                            client.tag("Tagging while training runs .", models=["pos"])
                        except grpc.RpcError as error:
                            failures.append(error)

            tagging = threading.Thread(target=keep_tagging)
            tagging.start()
            job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="places-train", dev_corpus="places-dev", model_name="places", overrides=FAST), timeout=30)
            assert job.state == "QUEUED" and job.epochs == 2
            events = watch(training, job.id)
            stop.set()
            tagging.join()
            assert failures == []
            states = [e.job.state for e in events]
            assert states[-1] == "SUCCEEDED" and events[-1].final and "RUNNING" in states
            assert any(e.job.step > 0 and e.job.steps > 0 for e in events)
            assert any(e.job.epoch == 2 for e in events)
            done = events[-1].job
            assert (done.version, done.activated) == ("1", True) and "ner.f1" in done.dev_metrics
            assert "ner.PLACE.f1" in done.dev_metrics
            log = (data_dir / "jobs" / job.id / "log.txt").read_text()
            assert log.strip().endswith("done") and "recipe: span-small" in log  # the built-in recipe for 400 sentences

            with TaggerClient(f"127.0.0.1:{running.port}") as client:
                response = client.tag("We drove from Boston to Chicago last year .", models=["places"])
                assert response.models[0].name == "places" and response.models[0].version == "1"
                labels = client.list_models()
                assert {"B-PLACE", "I-PLACE"} <= set(next(m for m in labels.models if m.name == "places").tasks[0].labels)

            tuned = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="places-dev", dev_corpus="places-dev", model_name="places", base_model="places",
                overrides={"train.epochs": "1", "train.lr": "0.001"}), timeout=30)
            tuned = watch(training, tuned.id)[-1].job
            assert (tuned.state, tuned.version) == ("SUCCEEDED", "2"), tuned.error
            with pytest.raises(grpc.RpcError) as error:
                training.StartTraining(pb.StartTrainingRequest(train_corpus="places-dev", dev_corpus="places-dev",
                                                               model_name="x", base_model="places:9"), timeout=30)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            # a new label set on a served model's encoder: train.init_from names a served model, not a path
            started = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="places-dev", dev_corpus="places-dev", model_name="places-pos",
                overrides={"train.epochs": "1", "train.init_from": "places:1"}), timeout=30)
            started = watch(training, started.id)[-1].job
            assert started.state == "SUCCEEDED", started.error
            stored = json.loads((data_dir / "models" / "places-pos" / "1" / "config.json").read_text())
            assert stored["train"]["init_from"].endswith("places/1")
            for overrides, code in (({"train.init_from": "/etc"}, grpc.StatusCode.INVALID_ARGUMENT),
                                    ({"train.init_from": "nobody"}, grpc.StatusCode.NOT_FOUND),
                                    ({"model.vectors": "/etc/passwd"}, grpc.StatusCode.INVALID_ARGUMENT)):
                with pytest.raises(grpc.RpcError) as error:
                    training.StartTraining(pb.StartTrainingRequest(
                        train_corpus="places-dev", dev_corpus="places-dev", model_name="x", overrides=overrides),
                        timeout=30)
                assert error.value.code() == code, error.value.details()

            long_job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="places-train", dev_corpus="places-dev", model_name="places",
                overrides={**FAST, "train.epochs": "200"}), timeout=30)
            for _ in range(240):
                if training.GetJob(pb.GetJobRequest(id=long_job.id), timeout=10).state == "RUNNING":
                    break
                time.sleep(0.25)
            cancelled = training.CancelJob(pb.CancelJobRequest(id=long_job.id), timeout=30)
            assert cancelled.id == long_job.id
            final = watch(training, long_job.id)[-1].job
            assert final.state == "CANCELLED" and final.error == "cancelled"

    # A restarted server finds its jobs, corpora and model versions.
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            jobs = pb_grpc.TrainingStub(channel).ListJobs(pb.ListJobsRequest(), timeout=30).jobs
            assert [j.state for j in jobs] == ["CANCELLED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
            versions = pb_grpc.ModelsStub(channel).ListModels(pb.ListModelVersionsRequest(name="places"), timeout=30)
            active = [v.version for v in versions.versions if v.active]
            assert [v.version for v in versions.versions] == ["1", "2"] and len(active) == 1
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            assert client.tag("Paris .", models=["places"]).models[0].version == active[0]


def test_bad_corpora_are_rejected_and_nothing_is_stored(loop_thread, models_dir, tmp_path, shared_data, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("TAGGER_VECTORS_DIR", str(tmp_path / "no-vectors"))  # glove-6b-100d not installed here
    with training_server(loop_thread, models_dir, data_dir, max_corpus_bytes=200_000) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            good = corpus_bytes(shared_data, "dev", 20)
            bad = good + b"broken\tB-PER\textra\n"
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "broken", bad)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            line = good.count(b"\n") + 1
            assert f"line {line}: expected 5 columns, found 3" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "../escape", good)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid name" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "huge", corpus_bytes(shared_data, "train", 3000))
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert sorted(p.name for p in (data_dir / "corpora").iterdir()) == []
            upload(training, "fine", good)
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "fine", good)
            assert "immutable" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:
                training.StartTraining(pb.StartTrainingRequest(train_corpus="fine", dev_corpus="missing",
                                                               model_name="m"), timeout=30)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as error:
                training.StartTraining(pb.StartTrainingRequest(train_corpus="fine", dev_corpus="fine", model_name="m",
                                                               overrides={"train.epochs": "-1"}), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "train.epochs" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:  # named vectors this server lacks: said before any work
                training.StartTraining(pb.StartTrainingRequest(train_corpus="fine", dev_corpus="fine", model_name="m",
                                                               overrides={"model.vectors": "glove-6b-100d"}), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not installed" in error.value.details() and "tagger vectors glove-6b-100d" in error.value.details()


def test_training_needs_the_admin_token(loop_thread, models_dir, tmp_path, shared_data):
    with training_server(loop_thread, models_dir, tmp_path / "data", admin_token="tok") as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "c", corpus_bytes(shared_data, "dev", 5))
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as error:
                list(training.WatchJob(pb.GetJobRequest(id="x"), timeout=10))
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert upload(training, "c", corpus_bytes(shared_data, "dev", 5),
                          metadata=[("authorization", "Bearer tok")]).sentences == 5


def test_client_cli_upload_train_jobs(loop_thread, models_dir, tmp_path, shared_data):
    train_file, dev_file = tmp_path / "train.iob2", tmp_path / "dev.iob2"
    train_file.write_bytes(corpus_bytes(shared_data, "train", 200))
    dev_file.write_bytes(corpus_bytes(shared_data, "dev", 40))
    with training_server(loop_thread, models_dir, tmp_path / "data") as running:
        address = f"127.0.0.1:{running.port}"
        runner = CliRunner()
        for name, path in (("t", train_file), ("d", dev_file)):
            result = runner.invoke(cli_app, ["client", "upload", name, str(path), "--server", address])
            assert result.exit_code == 0, result.output
        assert "stored t: 200 sentences" in result.output or "stored d: 40 sentences" in result.output
        overrides = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
        result = runner.invoke(cli_app, ["client", "train", "--train", "t", "--dev", "d", "--model", "cli-model",
                                     "--server", address, *overrides])
        assert result.exit_code == 0, result.output
        assert "cli-model version 1 activated" in result.output
        assert "dev ner: accuracy" in result.output and "f1" in result.output
        assert any(line.split()[:1] == ["PLACE"] for line in result.output.splitlines())
        result = runner.invoke(cli_app, ["client", "jobs", "--server", address])
        assert result.exit_code == 0 and "SUCCEEDED" in result.output and "cli-model" in result.output


def test_restart_marks_interrupted_jobs_failed(models_dir, tmp_path):
    import asyncio

    from server.corpora import CorpusStore
    from server.jobs import JobManager

    data_dir = tmp_path / "data"
    store = ModelStore(data_dir)
    corpora = CorpusStore(data_dir, 10**6)

    async def never(*_):
        return False

    async def main():
        manager = JobManager(data_dir, store, corpora, 1, 1, never)
        # the database as a crashed server left it: one running, one queued, one finished job
        for job_id, state in (("running1", "RUNNING"), ("queued1", "QUEUED"), ("done1", "SUCCEEDED")):
            manager.db.execute("INSERT INTO jobs (id, state, model_name, request, created, dev_metrics) "
                               "VALUES (?, ?, 'm', '{}', ?, '{}')", (job_id, state, len(job_id)))
        manager.start()
        states = {j["id"]: (j["state"], j["error"]) for j in manager.list()}
        await manager.close()
        return states

    states = asyncio.run(main())
    assert states["running1"] == ("FAILED", "interrupted by a server restart")
    assert states["queued1"] == ("FAILED", "interrupted by a server restart")
    assert states["done1"][0] == "SUCCEEDED"


def test_auto_activation_only_when_not_worse(loop_thread, models_dir, tmp_path):
    from server.admin import ModelsService

    with training_server(loop_thread, models_dir, tmp_path / "data") as running:
        store = ModelStore(tmp_path / "data")
        version = store.add("pos", models_dir / "pos")
        service = ModelsService(store, running.service)
        active = running.service.registry.get("pos")
        assert not loop_thread.run(service.activate_if_better("pos", version, active.dev_score - 0.01, True))
        assert running.service.registry.get("pos").version == active.version
        assert not loop_thread.run(service.activate_if_better("pos", version, active.dev_score + 0.01, False))
        assert loop_thread.run(service.activate_if_better("pos", version, active.dev_score, True))
        assert running.service.registry.get("pos").version == version


def test_a_worker_killed_mid_epoch_fails_its_job_and_nothing_else(loop_thread, models_dir, tmp_path, shared_data):
    import multiprocessing
    import os
    import signal

    data_dir = tmp_path / "data"
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel, \
                TaggerClient(f"127.0.0.1:{running.port}") as client:
            training, models = pb_grpc.TrainingStub(channel), pb_grpc.ModelsStub(channel)
            upload(training, "k-train", corpus_bytes(shared_data, "train", 400))
            upload(training, "k-dev", corpus_bytes(shared_data, "dev", 80))
            before = client.tag("Paris is big .", models=["pos"])
            job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="k-train", dev_corpus="k-dev", model_name="killed",
                overrides={**FAST, "train.epochs": "200"}), timeout=30)
            for _ in range(480):  # until the worker is inside an epoch
                current = training.GetJob(pb.GetJobRequest(id=job.id), timeout=10)
                if current.state == "RUNNING" and current.step > 0:
                    break
                time.sleep(0.25)
            else:
                pytest.fail(f"the job never got going: {current}")
            workers = multiprocessing.active_children()
            assert len(workers) == 1
            os.kill(workers[0].pid, signal.SIGKILL)  # as the OOM killer would
            final = watch(training, job.id)[-1].job
            assert (final.state, final.error) == ("FAILED", "worker killed by signal SIGKILL")
            after = client.tag("Paris is big .", models=["pos"])  # still serving, the same model
            assert after.models == before.models and after.sentences == before.sentences
            names = {m.name for m in models.ListModels(pb.ListModelVersionsRequest(), timeout=30).versions}
            assert "killed" not in names  # no half-trained version registered
            assert not (data_dir / "models" / "killed").exists()


def test_a_full_disk_during_upload_is_a_clear_error_and_leaves_nothing(loop_thread, models_dir, tmp_path, shared_data,
                                                                      monkeypatch):
    import errno

    from server.corpora import Upload

    data_dir = tmp_path / "data"
    original = Upload.write

    def write_until_full(self, data):  # the disk fills after 50 kB
        if self.size + len(data) > 50_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)

    good = corpus_bytes(shared_data, "dev", 200)
    assert len(good) > 50_000
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            monkeypatch.setattr(Upload, "write", write_until_full)
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "full", good, chunk=16 * 1024)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.value.details() == "cannot store the corpus (No space left on device); nothing stored"
            assert list((data_dir / "corpora").iterdir()) == []  # no partial file, no temp directory
            monkeypatch.setattr(Upload, "write", original)  # space freed: the same upload now succeeds
            assert upload(training, "full", good).sentences == 200


def test_limits_on_stored_corpora_and_model_versions(loop_thread, models_dir, tmp_path, shared_data):
    data_dir = tmp_path / "data"
    with training_server(loop_thread, models_dir, data_dir, max_corpora=2, max_versions=1) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            good = corpus_bytes(shared_data, "dev", 20)
            upload(training, "one", good), upload(training, "two", good)
            with pytest.raises(grpc.RpcError) as error:
                upload(training, "three", good)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "the limit of 2 stored corpora is reached" in error.value.details()
            assert sorted(p.name for p in (data_dir / "corpora").iterdir()) == ["one", "two"]
            with pytest.raises(grpc.RpcError) as error:  # pos has its bundled version 1: no room for a second
                training.StartTraining(pb.StartTrainingRequest(train_corpus="one", dev_corpus="two", model_name="pos"),
                                       timeout=30)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "model pos has 1 version, the limit; delete an old version first" in error.value.details()
            assert training.ListJobs(pb.ListJobsRequest(), timeout=30).jobs == []


def test_a_distillation_job_learns_from_a_served_teacher(loop_thread, models_dir, tmp_path, shared_data):
    """StartTraining with teachers: a student of the served NER model, from an uploaded corpus."""
    data_dir = tmp_path / "data"
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            plain = lambda split, n: corpus_bytes(shared_data, split, n).replace(b"-PLACE\t", b"-LOC\t")  # noqa: E731
            upload(training, "ner-train", plain("train", 300))
            upload(training, "ner-dev", plain("dev", 60))
            job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="ner-train", dev_corpus="ner-dev", model_name="student", teachers=["ner"],
                overrides={**FAST, "distill.weight": "0.8"}), timeout=30)
            done = watch(training, job.id)[-1].job
            assert (done.state, done.version) == ("SUCCEEDED", "1"), done.error
            assert "ner.f1" in done.dev_metrics
            log = (data_dir / "jobs" / job.id / "log.txt").read_text()
            assert "distilling from 1 teacher(s) on 300 sentences" in log
            with TaggerClient(f"127.0.0.1:{running.port}") as client:
                response = client.tag("We drove from Boston to Chicago last year .", models=["student"])
                assert response.models[0].name == "student"
                tokens = [t for sentence in response.sentences for t in sentence.tokens]
                assert len(tokens) == 9 and all("ner" in t.labels for t in tokens)

            upload(training, "places-train", corpus_bytes(shared_data, "train", 50))
            # the client command line asks for the same kind of job; labels the teacher never saw: a clear failure
            result = CliRunner().invoke(cli_app, ["client", "train", "--train", "places-train", "--dev", "ner-dev",
                                                  "--model", "student2", "--teacher", "ner", "--server",
                                                  f"127.0.0.1:{running.port}", *(f"--set={k}={v}" for k, v in FAST.items())])
            assert result.exit_code == 1, result.output
            failed = next(j for j in training.ListJobs(pb.ListJobsRequest(), timeout=30).jobs if j.model_name == "student2")
            assert failed.state == "FAILED" and "PLACE" in failed.error
            assert f"job {failed.id} FAILED" in result.output and "PLACE" in result.output
            for request, code in ((dict(teachers=["ner"], base_model="ner"), grpc.StatusCode.INVALID_ARGUMENT),
                                  (dict(teachers=["nobody"]), grpc.StatusCode.NOT_FOUND)):
                with pytest.raises(grpc.RpcError) as error:
                    training.StartTraining(pb.StartTrainingRequest(train_corpus="ner-train", dev_corpus="ner-dev",
                                                                   model_name="x", **request), timeout=30)
                assert error.value.code() == code, error.value.details()


def test_a_job_learns_alongside_uploaded_auxiliary_corpora(loop_thread, models_dir, tmp_path, shared_data):
    """``train.auxiliary`` names uploaded corpora (never paths on the server): their tasks train
    the shared encoder and the registered model has only the job's own task."""
    data_dir = tmp_path / "data"
    ewt = (shared_data / "ud-english-ewt" / "en_ewt-ud-train.conllu").read_text().split("\n\n")[:150]
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            upload(training, "places-train", corpus_bytes(shared_data, "train", 200))
            upload(training, "places-dev", corpus_bytes(shared_data, "dev", 50))
            ewt_bytes = ("\n\n".join(ewt) + "\n\n").encode()
            xpos = pb.CorpusFormat(label_column="xpos")  # the job reads it so (auto would take UPOS)
            training.UploadCorpus(iter([pb.CorpusChunk(name="ewt-xpos", format=xpos, data=ewt_bytes)]), timeout=60)
            for key, value, code in (("train.auxiliary", '["nothing-uploaded"]', grpc.StatusCode.NOT_FOUND),
                                     ("train.auxiliary", '["/etc/passwd"]', grpc.StatusCode.INVALID_ARGUMENT),
                                     ("train.auxiliary", '"ewt-xpos"', grpc.StatusCode.INVALID_ARGUMENT),
                                     ("train", '{auxiliary = ["/etc/passwd"]}', grpc.StatusCode.INVALID_ARGUMENT),
                                     ("model", '{vectors = "/etc/passwd"}', grpc.StatusCode.INVALID_ARGUMENT)):
                with pytest.raises(grpc.RpcError) as error:
                    training.StartTraining(pb.StartTrainingRequest(
                        train_corpus="places-train", dev_corpus="places-dev", model_name="x",
                        overrides={**FAST, key: value}), timeout=30)
                assert error.value.code() == code, (key, value, error.value.details())
            with pytest.raises(grpc.RpcError) as error:
                training.StartTraining(pb.StartTrainingRequest(
                    train_corpus="places-train", dev_corpus="places-dev", model_name="x", base_model="ner",
                    overrides={**FAST, "train.auxiliary": '["ewt-xpos"]'}), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "base model" in error.value.details()
            job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="places-train", dev_corpus="places-dev", model_name="places",
                overrides={**FAST, "train.auxiliary": '["ewt-xpos"]'}), timeout=30)
            done = watch(training, job.id)[-1].job
            assert (done.state, done.version) == ("SUCCEEDED", "1"), done.error
            log = (data_dir / "jobs" / job.id / "log.txt").read_text()
            assert "auxiliary: aux1 (tag, column xpos) from ewt-xpos; 150 sentences besides this corpus's 200" in log
            card = next((data_dir / "models" / "places").glob("*/README.md")).read_text()
            assert "auxiliary corpora (150 of those sentences)" in card and "`ewt-xpos`" in card
            with TaggerClient(f"127.0.0.1:{running.port}") as client:
                response = client.tag("We drove from Boston to Chicago last year .", models=["places"])
                tokens = [t for sentence in response.sentences for t in sentence.tokens]
                assert len(tokens) == 9 and all(set(t.labels) == {"ner"} for t in tokens)


def test_a_search_job_reports_trials_registers_the_best_and_cancels(loop_thread, models_dir, tmp_path, shared_data):
    data_dir = tmp_path / "data"
    with training_server(loop_thread, models_dir, data_dir) as running:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            training = pb_grpc.TrainingStub(channel)
            ewt = shared_data / "ud-english-ewt"
            for name, split, count in (("pos-train", "train", 200), ("pos-dev", "dev", 50)):
                blocks = (ewt / f"en_ewt-ud-{split}.conllu").read_text().split("\n\n")[:count]
                upload(training, name, ("\n\n".join(blocks) + "\n\n").encode())
            job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="pos-train", dev_corpus="pos-dev", model_name="searched", search_trials=2,
                overrides={"train.epochs": "1", "model.word_dim": "32"}), timeout=30)
            assert (job.state, job.trials, job.trial) == ("QUEUED", 2, 0)
            events = watch(training, job.id)
            done = events[-1].job
            assert done.state == "SUCCEEDED", done.error
            assert [e.job.trial for e in events if e.job.trial] [:1] == [1] and done.trial == 2
            assert done.dev_score == pytest.approx(done.dev_metrics["upos.accuracy"]) and done.dev_score > 0.2
            card = (data_dir / "models" / "searched" / done.version / "README.md").read_text()
            assert "## Search" in card and "Best of 2 trials" in card
            log = (data_dir / "jobs" / job.id / "log.txt").read_text()
            assert "searching 2 trials on 200 sentences" in log and "trial 1: complete" in log

            with pytest.raises(grpc.RpcError) as error:
                training.StartTraining(pb.StartTrainingRequest(train_corpus="pos-train", dev_corpus="pos-dev",
                                                               model_name="x", search_trials=2, teachers=["ner"]),
                                       timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            long_job = training.StartTraining(pb.StartTrainingRequest(
                train_corpus="pos-train", dev_corpus="pos-dev", model_name="searched", search_trials=50,
                overrides={"train.epochs": "50"}), timeout=30)
            for _ in range(240):
                if training.GetJob(pb.GetJobRequest(id=long_job.id), timeout=10).state == "RUNNING":
                    break
                time.sleep(0.25)
            training.CancelJob(pb.CancelJobRequest(id=long_job.id), timeout=30)
            final = watch(training, long_job.id)[-1].job
            assert final.state == "CANCELLED" and final.trial < 50


def test_a_jobs_file_from_before_search_jobs_is_migrated_and_kept(tmp_path):
    """jobs.sqlite written before the trial columns existed: opened, extended, its jobs intact."""
    import sqlite3

    from server.corpora import CorpusStore
    from server.jobs import COLUMNS, JobManager

    old = [c for c in COLUMNS if c not in ("trial", "trials")]
    db = sqlite3.connect(tmp_path / "jobs.sqlite")
    db.execute(f"CREATE TABLE jobs ({', '.join(old)})")
    row = {c: 0 for c in old} | {"id": "abc", "state": "SUCCEEDED", "model_name": "m", "request": "{}", "version": "1",
                                 "error": "", "dev_metrics": "{}"}
    db.execute(f"INSERT INTO jobs VALUES ({', '.join('?' * len(old))})", [row[c] for c in old])
    db.commit()
    db.close()

    async def finished(*_):
        return True

    jobs = JobManager(tmp_path, ModelStore(tmp_path), CorpusStore(tmp_path, 1 << 20), 1, 1, finished)
    job = jobs.get("abc")
    assert (job["state"], job["version"], job["trial"], job["trials"]) == ("SUCCEEDED", "1", 0, 0)
    jobs.db.close()
