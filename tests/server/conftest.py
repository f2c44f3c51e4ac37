"""A real server on a free loopback port, run on its own event loop thread, with the tiny
models trained by the root conftest."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from server.app import build_server
from server.registry import ModelRegistry
from server.settings import ServerSettings


class LoopThread:
    """An asyncio loop on a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, tiny_pos_model, tiny_ner_model) -> Path:
    directory = tmp_path_factory.mktemp("served")
    shutil.copytree(tiny_pos_model, directory / "pos")
    shutil.copytree(tiny_ner_model, directory / "ner")
    return directory


@pytest.fixture(scope="session")
def loop_thread():
    thread = LoopThread()
    yield thread
    thread.close()


@contextmanager
def running_server(loop_thread: LoopThread, models_dir: Path, **overrides):
    """Start a server (port 0) with the test models; yields the RunningServer."""
    settings = ServerSettings(port=0, models=models_dir, default_models=["pos", "ner"], **overrides)
    registry = ModelRegistry.from_directory(models_dir, settings.default_models, settings.backend)
    running = loop_thread.run(build_server(settings, registry))
    try:
        yield running
    finally:
        loop_thread.run(running.stop(0))


@pytest.fixture(scope="module")
def server(loop_thread, models_dir):
    with running_server(loop_thread, models_dir, metrics_port=0) as running:
        yield running


@pytest.fixture()
def client(server):
    from server.client import TaggerClient

    with TaggerClient(f"127.0.0.1:{server.port}") as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(models_dir: Path, directory: Path, name: str = "server"):
    """``tagger serve`` as a real process with its own store in ``directory/name-data``, once it
    reports SERVING; yields ``(process, address, log path)`` and kills it afterwards if still running."""
    from server.client import TaggerClient

    port = free_port()
    log_path = directory / f"{name}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--models", str(models_dir),
                             "--log-json", "--data-dir", str(directory / f"{name}-data"), "--log-level", "debug"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    address = f"127.0.0.1:{port}"
    try:
        with TaggerClient(address, timeout=2) as client:
            for _ in range(240):
                try:
                    if client.health() == "SERVING":
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.25)
            else:
                pytest.fail("server did not start: " + log_path.read_text())
        yield proc, address, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
