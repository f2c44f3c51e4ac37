"""Serving benchmark on loopback: single-sentence Tag latency and throughput at several
concurrency levels, TagStream throughput, and in-process batch throughput, in one run.

Usage: python scripts/bench_serve.py [--models models] [--seconds 8] [--levels 1 8 32 64]

Starts `tagger serve` as a subprocess on a free port, sends EWT test sentences (raw text),
and stops the server. Bounded in time: each level runs for --seconds.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EWT_TEST = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-test.conllu"


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--backend", default="torch", choices=["auto", "torch", "onnx"],
                        help="the server's encoder backend, and the in-process baseline's")
    args = parser.parse_args()

    from server.registry import ModelRegistry
    from tagger.data.readers import read_conllu

    texts = [s.text for s in read_conllu(EWT_TEST, None) if s.text and 15 <= len(s.tokens) <= 25]
    registry = ModelRegistry.from_directory(args.models, backend=args.backend)
    taggers = [registry.get(name).tagger for name in registry.defaults]
    backend = taggers[0].backend
    in_process(taggers, texts)  # warm-up: a first pass over every text (a shorter one left "before" 30% low)
    before = in_process(taggers, texts)

    store = tempfile.mkdtemp(prefix="bench-serve-")
    server, address = start_server(args.models, store, backend)
    try:
        asyncio.run(run_level(address, texts, 4, 1.0))  # warm-up
        rows = [asyncio.run(run_level(address, texts, level, args.seconds)) for level in args.levels]
        stream = asyncio.run(run_stream(address, texts))
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
    print("| clients | requests | p50 ms | p99 ms | tokens/s | of in-process |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['clients']} | {row['requests']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
              f"{row['tokens_per_s']:,.0f} | {100 * row['tokens_per_s'] / batch:.0f}% |")
    print(f"\nTagStream: {stream:,.0f} tokens/s ({100 * stream / batch:.0f}% of in-process); in-process batch: "
          f"{batch:,.0f} tokens/s (before the server ran {before[0]:,.0f}, after {after[0]:,.0f})")
    one = next((row for row in rows if row["clients"] == 1), None)
    if one is not None:
        print(f"one client p50 {one['p50_ms']:.2f} ms; in-process, one sentence at a time: p50 {single_p50:.2f} ms "
              f"(before {before[1]:.2f}, after {after[1]:.2f}); +{one['p50_ms'] - single_p50:.2f} ms over gRPC")
    print(f"server RSS after the run: {server_rss:.0f} MB")


if __name__ == "__main__":
    main()
