"""The Models service: versions on disk, zero-downtime activation, rollback, delete, admin auth."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import grpc
import pytest

from server.app import build_server
from server.auth import is_loopback
from server.client import TaggerClient
from server.registry import ModelRegistry
from server.settings import ServerSettings
from server.store import ModelStore, StoreError
from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc


@contextmanager
def store_server(loop_thread, models_dir, data_dir, **overrides):
    settings = ServerSettings(port=0, models=models_dir, data_dir=data_dir, default_models=["pos"], **overrides)
    store = ModelStore(data_dir)
    store.seed(models_dir)
    running = loop_thread.run(build_server(settings, ModelRegistry.from_store(store, ["pos"]), store=store))
    try:
        yield running, store
    finally:
        loop_thread.run(running.stop(0))


def versions(stub, metadata=None):
    response = stub.ListModels(pb.ListModelVersionsRequest(), timeout=30, metadata=metadata)
    return {(v.name, v.version): v.active for v in response.versions}


def test_store_layout_and_names(models_dir, tmp_path):
    store = ModelStore(tmp_path)
    store.seed(models_dir)
    assert store.names() == ["ner", "pos"] and store.versions("pos") == ["1"] and store.active("pos") == "1"
    assert store.add("pos", models_dir / "pos") == "2"
    assert (tmp_path / "models" / "pos" / "2" / "weights.safetensors").is_file()
    assert not list((tmp_path / "models" / "pos").glob(".incoming-*"))
    for bad in ("../etc", "a/b", "", "UPPER", ".hidden", "x" * 65):
        with pytest.raises(StoreError, match="invalid name"):
            store.versions(bad)
    with pytest.raises(StoreError, match="is active"):
        store.delete("pos", "1")


def test_activate_while_tagging_then_roll_back_and_delete(loop_thread, models_dir, tmp_path):
    with store_server(loop_thread, models_dir, tmp_path / "data") as (running, store):
        address = f"127.0.0.1:{running.port}"
        assert store.add("pos", models_dir / "pos") == "2"
        seen, failures, stop = [], [], threading.Event()

        def keep_tagging():
            with TaggerClient(address) as client:
                while not stop.is_set():
                    try:
                        response = client.tag("Traffic keeps flowing during the swap .", models=["pos"])
                        seen.append(response.models[0].version)
                    except grpc.RpcError as error:
                        failures.append(error)

        workers = [threading.Thread(target=keep_tagging) for _ in range(4)]
        for worker in workers:
            worker.start()
        with grpc.insecure_channel(address) as channel:
            models = pb_grpc.ModelsStub(channel)
            assert versions(models) == {("ner", "1"): True, ("pos", "1"): True, ("pos", "2"): False}
            time.sleep(0.3)
            activated = models.ActivateModel(pb.ActivateModelRequest(name="pos", version="2"), timeout=60)
            assert (activated.version, activated.active, activated.tasks[0].name) == ("2", True, "upos")
            time.sleep(0.3)
            models.ActivateModel(pb.ActivateModelRequest(name="pos", version="1"), timeout=60)  # rollback
            time.sleep(0.3)
            stop.set()
            for worker in workers:
                worker.join()
            assert failures == []
            assert "1" in seen and "2" in seen and seen[-1] == "1"
            first_two = seen.index("2")
            assert all(v == "1" for v in seen[:first_two])
            assert store.active("pos") == "1"

            with pytest.raises(grpc.RpcError) as error:
                models.DeleteModel(pb.DeleteModelRequest(name="pos", version="1"), timeout=30)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            models.DeleteModel(pb.DeleteModelRequest(name="pos", version="2"), timeout=30)
            assert ("pos", "2") not in versions(models)
            with pytest.raises(grpc.RpcError) as error:
                models.ActivateModel(pb.ActivateModelRequest(name="pos", version="9"), timeout=30)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(loop_thread, models_dir, tmp_path):
    with store_server(loop_thread, models_dir, tmp_path / "data") as (running, store):
        version = store.add("pos", models_dir / "pos")
        weights = store.path("pos", version) / "weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.RpcError) as error:
                pb_grpc.ModelsStub(channel).ActivateModel(pb.ActivateModelRequest(name="pos", version=version), timeout=30)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "corrupt or truncated" in error.value.details() and "keeps serving" in error.value.details()
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            assert client.tag("Still here .", models=["pos"]).models[0].version == "1"
        assert store.active("pos") == "1"


def test_admin_token(loop_thread, models_dir, tmp_path):
    with store_server(loop_thread, models_dir, tmp_path / "data", admin_token="s3cret-token") as (running, _):
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            models = pb_grpc.ModelsStub(channel)
            for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", "s3cret-token")]):
                with pytest.raises(grpc.RpcError) as error:
                    versions(models, metadata)
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "s3cret" not in error.value.details()
            assert versions(models, [("authorization", "Bearer s3cret-token")])
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            assert client.tag("Tagging stays open .").sentences


def test_tagging_token(loop_thread, models_dir, tmp_path):
    with store_server(loop_thread, models_dir, tmp_path / "data", tagging_token="tag-token") as (running, _):
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            with pytest.raises(grpc.RpcError) as error:
                client.tag("No token .")
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            response = client.stub.Tag(pb.TagRequest(text="With token ."), timeout=30,
                                       metadata=[("authorization", "Bearer tag-token")])
            assert response.sentences


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False)])
def test_admin_without_token_only_on_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_client_cli_models_and_activate(loop_thread, models_dir, tmp_path):
    from typer.testing import CliRunner

    from server.cli import app

    with store_server(loop_thread, models_dir, tmp_path / "data", admin_token="tok") as (running, store):
        store.add("pos", models_dir / "pos")
        address = f"127.0.0.1:{running.port}"
        runner = CliRunner()
        denied = runner.invoke(app, ["client", "models", "--server", address])
        assert denied.exit_code == 1 and "UNAUTHENTICATED" in denied.output
        listed = runner.invoke(app, ["client", "models", "--server", address, "--token", "tok"])
        assert listed.exit_code == 0, listed.output
        rows = [line.split() for line in listed.stdout.splitlines()[1:]]
        assert rows[0][:3] == ["ner", "1", "*"] and rows[1][:3] == ["pos", "1", "*"]
        assert rows[2][:2] == ["pos", "2"] and "*" not in rows[2]
        activated = runner.invoke(app, ["client", "activate", "pos", "2", "--server", address], env={"TAGGER_TOKEN": "tok"})
        assert activated.exit_code == 0 and "pos version 2 is active" in activated.stdout
        assert store.active("pos") == "2"
