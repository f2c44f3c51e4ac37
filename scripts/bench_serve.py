"""Serving benchmark on loopback: single-sentence Tag latency and throughput at several
concurrency levels, TagStream throughput, and in-process batch throughput, in one run.

Usage: python scripts/bench_serve.py [--models models] [--seconds 8] [--levels 1 8 32 64]

Starts `tagger serve` as a subprocess on a free port, sends EWT test sentences (raw text),
and stops the server. Bounded in time: each level runs for --seconds.

Says where the time goes: for each level, the cores the clients (this process), the
server's event loop and its other threads (tagging workers, gRPC's poller) used; and for
one request at a time, each stage of the server's path timed in this process (tagging, the
micro-batcher's thread hop, the response message, protobuf bytes), the rest being gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STREAM_PASSES = 5
EWT_TEST = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-test.conllu"


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user and system) of process ``pid`` so far: its main thread's (the server's
    event loop) and all its threads' (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")

    def read(path: str) -> float:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()  # after the command name
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    return read(f"/proc/{pid}/task/{pid}/stat"), read(f"/proc/{pid}/stat")


def with_cpu(server_pid: int, run: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``run()``'s result and the cores each side used while it ran: this process (the
    clients), the server's event-loop thread and the server's other threads (tagging workers,
    gRPC's poller), in CPU seconds per second."""
    client, (loop, server), started = os.times(), cpu_seconds(server_pid), time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    after, (loop_after, server_after) = os.times(), cpu_seconds(server_pid)
    return result, {"client": (after.user + after.system - client.user - client.system) / elapsed,
                    "loop": (loop_after - loop) / elapsed, "workers": (server_after - server - loop_after + loop) / elapsed}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(models: Path, store: str, backend: str = "torch") -> tuple[subprocess.Popen, str]:
    """`tagger serve` on a free loopback port with its own store; returns once it is SERVING."""
    from server.client import TaggerClient

    port = free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--models",
                               str(models), "--data-dir", store, "--log-level", "warning"], cwd=ROOT,
                              env={**os.environ, "TAGGER_BACKEND": backend})
    with TaggerClient(address, timeout=2) as probe:
        for _ in range(240):
            try:
                if probe.health() == "SERVING":
                    return server, address
            except Exception:
                pass
            time.sleep(0.25)
    server.kill()
    raise SystemExit("the server did not start")


async def run_level(address: str, texts: list[str], clients: int, seconds: float) -> dict:
    import grpc

    from server.client import make_request
    from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

    latencies: list[float] = []
    tokens = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaggerStub(channel)
        stop_at = time.perf_counter() + seconds

        async def client(offset: int) -> None:
            nonlocal tokens
            i = offset
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await stub.Tag(make_request(text=texts[i % len(texts)]), timeout=30)
                latencies.append(time.perf_counter() - started)
                tokens += sum(len(s.tokens) for s in response.sentences)
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)], "tokens_per_s": tokens / elapsed}


async def run_stream(address: str, texts: list[str]) -> float:
    import grpc

    from server.client import make_request
    from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaggerStub(channel)
        started = time.perf_counter()
        tokens = 0
        async for response in stub.TagStream(iter([make_request(text=t, request_id=str(i)) for i, t in enumerate(texts)])):
            tokens += sum(len(s.tokens) for s in response.sentences)
        return tokens / (time.perf_counter() - started)


def in_process(taggers: list, texts: list[str]) -> tuple[float, float]:
    """What the server's models do in this process: batch tokens/s over ``texts`` (each model
    in turn, as the server runs each default model on each request), and the p50 ms of one
    sentence at a time (one tokenization shared by the models, as the server does)."""
    started = time.perf_counter()
    tokens = 0
    for tagger in taggers:
        tokens = sum(len(s.tokens) for d in tagger.tag_texts(texts, scores=False) for s in d.sentences)
    batch = tokens / (time.perf_counter() - started)
    single = []
    for text in texts:
        started = time.perf_counter()
        tokenized = taggers[0].tokenize([text])
        for tagger in taggers:
            tagger.tag_documents(tokenized, scores=False)
        single.append(1000 * (time.perf_counter() - started))
    return batch, statistics.median(single)


def per_call(taggers: list, texts: list[str], size: int) -> float:
    """Tokens/s tagging ``texts`` in this process ``size`` texts a call: the most a server can
    do when ``size`` requests make each micro-batch (small batches pad and loop more)."""
    started, tokens = time.perf_counter(), 0
    for k in range(0, len(texts), size):
        chunk = taggers[0].tokenize(texts[k:k + size])
        for tagger in taggers:
            tokens += sum(len(s) for d in tagger.predict_documents(chunk, False) for s in d.sentences)
    return tokens / len(taggers) / (time.perf_counter() - started)


def where_time_goes(entries: list, texts: list[str], threads: int, workers: int) -> dict[str, float]:
    """The server's path for one request at a time, stage by stage, in this process and on
    ``threads`` torch threads (the server's setting), p50 ms over ``texts``: tagging called
    directly (tokenize once, every default model); the same through the micro-batchers (the
    event loop and worker-thread hops); building the response message; and the protobuf
    bytes both ways (request and response serialized and parsed). What a gRPC call costs
    beyond their sum is gRPC itself: its handling on both sides, the loopback, the client."""
    import torch

    from server.batcher import MicroBatcher
    from server.client import make_request
    from server.convert import response_pb
    from tagger_proto.v1 import tagger_pb2 as pb

    taggers = [e.tagger for e in entries]
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)  # 0: torch's default, as the server does
    stages: dict[str, list[float]] = {"tag": [], "batcher": [], "response": [], "protobuf": []}

    def tag(text: str) -> list:
        document = taggers[0].tokenize([text])[0] if len(taggers) > 1 else text
        return [t.predict_documents([document], False)[0] for t in taggers]

    async def through_batchers() -> None:
        batchers = [MicroBatcher(t, workers=workers) for t in taggers]
        for batcher in batchers:
            batcher.start()
        try:
            for text in texts:
                started = time.perf_counter()
                document = await batchers[0].tokenize(text) if len(batchers) > 1 else text
                await asyncio.gather(*(b.submit(document, False) for b in batchers))
                stages["batcher"].append(1000 * (time.perf_counter() - started))
        finally:
            for batcher in batchers:
                await batcher.close()

    try:
        for text in texts:
            started = time.perf_counter()
            results = tag(text)
            stages["tag"].append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            response = response_pb(results, "", entries, (), False)
            stages["response"].append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            pb.TagRequest.FromString(make_request(text=text).SerializeToString())
            pb.TagResponse.FromString(response.SerializeToString())
            stages["protobuf"].append(1000 * (time.perf_counter() - started))
        asyncio.run(through_batchers())
    finally:
        torch.set_num_threads(before)
    return {stage: statistics.median(times) for stage, times in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--backend", default="torch", choices=["auto", "torch", "onnx", "int8", "onnx-int8"],
                        help="the server's encoder backend, and the in-process baseline's")
    args = parser.parse_args()

    from server.registry import ModelRegistry
    from server.settings import ServerSettings
    from tagger.data.readers import read_conllu

    texts = [s.text for s in read_conllu(EWT_TEST, None) if s.text and 15 <= len(s.tokens) <= 25]
    registry = ModelRegistry.from_directory(args.models, backend=args.backend)
    entries = [registry.get(name) for name in registry.defaults]
    taggers = [entry.tagger for entry in entries]
    backend = taggers[0].backend
    in_process(taggers, texts)  # warm-up: a first pass over every text (a shorter one left "before" 30% low)
    before = in_process(taggers, texts)
    settings = ServerSettings()
    threads = settings.torch_threads
    stages = where_time_goes(entries, texts, threads, settings.workers_per_model)
    ceilings = {level: per_call(taggers, texts, level) for level in args.levels}

    store = tempfile.mkdtemp(prefix="bench-serve-")
    server, address = start_server(args.models, store, backend)
    try:
        asyncio.run(run_level(address, texts, 4, 1.0))  # warm-up
        rows = []
        for level in args.levels:
            row, cores = with_cpu(server.pid, lambda: asyncio.run(run_level(address, texts, level, args.seconds)))
            rows.append({**row, **cores})
        # five passes over the texts: the stream's start (the first micro-batches are small) is not the measure
        stream, stream_cores = with_cpu(server.pid, lambda: asyncio.run(run_stream(address, texts * STREAM_PASSES)))
        server_rss = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(store, ignore_errors=True)
    after = in_process(taggers, texts)  # this machine drifts: the ratios use the mean of before and after
    batch, single_p50 = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2

    print(f"# serving benchmark: models {', '.join(sorted(p.name for p in args.models.iterdir() if p.is_dir()))} "
          f"(defaults applied per request), backend {backend}, {len(texts)} EWT test sentences of 15-25 tokens, "
          "raw text")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; client and server share them; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| clients | requests | p50 ms | p99 ms | tokens/s | of in-process | in-process, as many texts a call | "
          "cores: clients / server loop / server workers |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        ceiling = ceilings[row["clients"]]
        print(f"| {row['clients']} | {row['requests']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
              f"{row['tokens_per_s']:,.0f} | {100 * row['tokens_per_s'] / batch:.0f}% | {ceiling:,.0f} "
              f"({100 * ceiling / batch:.0f}%) | {_cores(row)} |")
    print(f"\nTagStream ({STREAM_PASSES} passes over the texts, one stream): {stream:,.0f} tokens/s "
          f"({100 * stream / batch:.0f}% of in-process), cores {_cores(stream_cores)}; in-process batch: "
          f"{batch:,.0f} tokens/s (before the server ran {before[0]:,.0f}, after {after[0]:,.0f})")
    one = next((row for row in rows if row["clients"] == 1), None)
    if one is not None:
        print(f"one client p50 {one['p50_ms']:.2f} ms; in-process, one sentence at a time: p50 {single_p50:.2f} ms "
              f"(before {before[1]:.2f}, after {after[1]:.2f}); +{one['p50_ms'] - single_p50:.2f} ms over gRPC")
        print(f"\nOne request at a time, where the time goes (p50 ms; in this process, {threads or 'default'} torch "
              "thread(s) as the server):")
        print("| stage | ms |\n|---|---:|")
        hop = stages["batcher"] - stages["tag"]
        rest = one["p50_ms"] - stages["batcher"] - stages["response"] - stages["protobuf"]
        for name, value in [("in-process, one sentence at a time (the baseline above)", single_p50),
                            (f"the server's {threads or 'default'} torch thread(s) a call instead of the default",
                             stages["tag"] - single_p50),
                            ("micro-batcher: event loop to worker thread and back", hop),
                            ("response message from the predictions", stages["response"]),
                            ("protobuf bytes: request and response, both ways", stages["protobuf"]),
                            ("gRPC (both sides' handling, loopback, client): the rest", rest),
                            ("one gRPC client, p50", one["p50_ms"])]:
            print(f"| {name} | {value:.2f} |")
    print(f"server RSS after the run: {server_rss:.0f} MB")


def _cores(used: dict[str, float]) -> str:
    return f"{used['client']:.2f} / {used['loop']:.2f} / {used['workers']:.2f}"


if __name__ == "__main__":
    main()
