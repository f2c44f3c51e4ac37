"""Soak test on loopback: 64 clients mixing Tag, TagStream and ListModels against one `tagger serve`.

Usage: python scripts/soak.py [--minutes 10] [--clients 64] [--max-requests 5000000]
                              [--stream-documents 0] [--json FILE] [--backend torch|onnx|auto|int8|onnx-int8]

Bounded in time and in request count. Prints, per minute, the requests, unexpected errors, p50
and p99 latency per method and the server's resident memory; at the end, RSS against its
value after the first minute. With --stream-documents N it then sends N tiny documents through
one TagStream and reports RSS before and after. Exits 1 on any unexpected error or if RSS grew
more than 10% after the first minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_serve import EWT_TEST, ROOT, rss_mb, start_server

sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def soak(address: str, pid: int, texts: list[str], minutes: float, clients: int, max_requests: int) -> dict:
    import grpc

    from server.client import make_request
    from tagger_proto.v1 import tagger_pb2 as pb
    from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    sent = 0
    stop_at = time.perf_counter() + 60 * minutes
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaggerStub(channel)

        async def one(rng: random.Random) -> None:
            kind = rng.choices(["Tag", "TagStream", "ListModels"], weights=[70, 20, 10])[0]
            started = time.perf_counter()
            if kind == "Tag":
                await stub.Tag(make_request(text=rng.choice(texts)), timeout=30)
            elif kind == "TagStream":
                requests = [make_request(text=rng.choice(texts), request_id=str(i)) for i in range(rng.randint(2, 12))]
                ids = [r.id async for r in stub.TagStream(iter(requests), timeout=60)]
                if ids != [r.id for r in requests]:
                    raise AssertionError(f"TagStream answered {ids}")
            else:
                await stub.ListModels(pb.ListModelsRequest(), timeout=30)
            latencies[kind].append(time.perf_counter() - started)

        async def client(seed: int) -> None:
            nonlocal sent
            rng = random.Random(seed)
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                try:
                    await one(rng)
                except Exception as error:  # every one of them is unexpected here
                    errors.append(f"{type(error).__name__}: {getattr(error, 'details', lambda: error)()}")

        async def monitor() -> list[dict]:
            rows, minute = [], 0
            while time.perf_counter() < stop_at and sent < max_requests:
                await asyncio.sleep(min(60.0, max(0.1, stop_at - time.perf_counter())))
                minute += 1
                row = {"minute": minute, "requests": sum(len(v) for v in latencies.values()), "errors": len(errors),
                       "rss_mb": round(rss_mb(pid), 1)}
                for kind, values in sorted(latencies.items()):
                    row[f"{kind}_p50_ms"], row[f"{kind}_p99_ms"] = round(percentile(values, .5), 1), round(percentile(values, .99), 1)
                    values.clear()
                rows.append(row)
                print(json.dumps(row), flush=True)
            return rows

        results = await asyncio.gather(monitor(), *(client(k) for k in range(clients)))
    rows = results[0]
    return {"minutes": rows, "errors": errors[:20], "error_count": len(errors), "requests": sent}


async def long_stream(address: str, pid: int, count: int) -> dict:
    import grpc

    from tagger_proto.v1 import tagger_pb2 as pb
    from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

    texts = ["Paris .", "ok", "Mr. Smith went to Washington .", "x y z"]
    samples = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaggerStub(channel)
        requests = (pb.TagRequest(id=str(i), text=texts[i % len(texts)]) for i in range(count))
        started, received = time.perf_counter(), 0
        async for response in stub.TagStream(requests, timeout=None):
            if response.id != str(received):
                raise AssertionError(f"document {received} came back as {response.id}")
            received += 1
            if received % max(1, count // 20) == 0:
                samples.append(round(rss_mb(pid), 1))
    return {"documents": received, "seconds": round(time.perf_counter() - started, 1), "rss_mb_samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max-requests", type=int, default=5_000_000)
    parser.add_argument("--stream-documents", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "auto", "int8", "onnx-int8"], help="the server's encoder backend")
    args = parser.parse_args()

    from tagger.data.readers import read_conllu

    texts = [s.text for s in read_conllu(EWT_TEST, None) if s.text]
    store = tempfile.mkdtemp(prefix="soak-")
    server, address = start_server(args.models, store, args.backend)
    try:
        result = asyncio.run(soak(address, server.pid, texts, args.minutes, args.clients, args.max_requests))
        if args.stream_documents:
            result["stream"] = asyncio.run(long_stream(address, server.pid, args.stream_documents))
            print(json.dumps(result["stream"]), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        result_code = server.wait(60)
        shutil.rmtree(store, ignore_errors=True)
    rows = result["minutes"]
    first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    result.update(rss_after_first_minute_mb=first, rss_end_mb=last, rss_growth=round(last / first - 1, 4),
                  server_exit=result_code)
    print(f"{result['requests']:,} requests, {result['error_count']} unexpected errors; RSS {first} MB after the "
          f"first minute, {last} MB at the end ({100 * (last / first - 1):+.1f}%); server exit {result_code}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(0 if result["error_count"] == 0 and last <= 1.1 * first and result_code == 0 else 1)


if __name__ == "__main__":
    main()
