"""Memory over a long run: a million tiny documents through `tagger tag` or one `TagStream`.

Usage: python scripts/bench_memory.py [--documents 1000000] [--via tag|stream] [--model models/en-joint]

Documents are short and one in two carries tokens never seen before (ticket numbers, user
names), as real traffic does: that is what makes spaCy's vocabulary and any per-form cache
grow. The resident memory of the tagging process is sampled throughout (`tagger tag`: its
worker processes' too, each counted once where they share pages with it: the sum of their
PSS); the run fails (exit 1) if that memory at the end is more than 10% above its value after
warm-up (the first 10% of the documents; with N workers, N times that, at most half: each
worker's vocabulary sees 1/N of them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench_serve import ROOT, rss_mb, start_server

FIXED = ["Paris .", "ok", "Mr. Smith went to Washington on Monday .", "x y z", "Thanks a lot !"]


def documents(count: int) -> Iterator[str]:
    for i in range(count):
        if i % 2:
            yield FIXED[i % len(FIXED)]
        else:
            yield f"Ticket T{i * 7919 % 10_000_019} was closed by user{i} ."


def job_pss_mb(pid: int) -> float:
    """Proportional set size of process ``pid`` and its child processes (a file job's workers),
    in MB (Linux): shared pages counted once in all."""
    pids = [pid] + [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")
                    if _parent(stat) == pid]
    total = 0
    for each in pids:
        try:
            total += next(int(line.split()[1]) for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines()
                          if line.startswith("Pss:"))
        except (OSError, StopIteration):  # a worker gone meanwhile
            if each == pid:
                raise RuntimeError(f"process {pid} has ended") from None
    return total / 1024


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def via_tag(model: Path, count: int, work: Path) -> tuple[list[tuple[float, float]], float]:
    """`tagger tag` over a file of ``count`` lines; (seconds, MB: the job's PSS, workers
    included) sampled twice a second from the first output on."""
    source = work / "documents.txt"
    with source.open("w") as handle:
        handle.writelines(text + "\n" for text in documents(count))
    command = [sys.executable, "-m", "tagger.cli", "tag", "--model", str(model), "--input", str(source),
               "--output", str(work / "tagged.jsonl"), "--no-scores"]
    started = time.perf_counter()
    log = (work / "stderr.txt").open("w")  # the progress bar; read back only on failure
    process = subprocess.Popen(command, cwd=ROOT, stderr=log)
    samples, tagging = [], False
    while process.poll() is None:
        # Sampling starts once output appears (the model is loaded and documents flow).
        tagging = tagging or any(p.stat().st_size for p in work.glob(".tagged.jsonl.*"))
        done = (work / "tagged.jsonl").exists()  # written and renamed: its workers have ended, the rest is exit
        try:
            if tagging and not done:
                samples.append((time.perf_counter() - started, job_pss_mb(process.pid)))
        except (OSError, RuntimeError):  # the process has just ended
            break
        time.sleep(0.5)
    log.close()
    if process.returncode != 0:
        raise SystemExit(f"tagger tag exited {process.returncode}: {(work / 'stderr.txt').read_text()[-2000:]}")
    lines = sum(1 for _ in (work / "tagged.jsonl").open())
    if lines != count:
        raise SystemExit(f"{lines} documents tagged of {count}")
    return samples, time.perf_counter() - started


def via_stream(models: Path, count: int, work: Path) -> tuple[list[tuple[float, float]], float]:
    """One TagStream of ``count`` documents to `tagger serve`; RSS sampled every 1% of them."""
    server, address = start_server(models, str(work / "store"))

    async def stream() -> list[tuple[float, float]]:
        import grpc

        from tagger_proto.v1 import tagger_pb2 as pb
        from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

        samples, started = [], time.perf_counter()
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TaggerStub(channel)
            requests = (pb.TagRequest(id=str(i), text=text) for i, text in enumerate(documents(count)))
            received = 0
            async for response in stub.TagStream(requests, timeout=None):
                if response.id != str(received):
                    raise SystemExit(f"document {received} came back as {response.id}")
                received += 1
                if received % max(1, count // 100) == 0:
                    samples.append((time.perf_counter() - started, rss_mb(server.pid)))
        return samples

    started = time.perf_counter()
    try:
        samples = asyncio.run(stream())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return samples, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--via", choices=["tag", "stream"], default="tag")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "en-joint",
                        help="--via tag: the model; --via stream serves every model beside it")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        if args.via == "tag":
            samples, seconds = via_tag(args.model, args.documents, work)
        else:
            samples, seconds = via_stream(args.model.parent, args.documents, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Warm-up: the first 10% of the documents, in which spaCy's string store in the tagging
    # process fills up to its reset (MAX_NEW_STRINGS, 100,000 new strings); `tagger tag`'s
    # workers each see 1/N of the documents, so each fills up only after N times as many.
    from tagger.inference.tagfiles import default_workers

    share = 0.1 * (min(default_workers(), 5) if args.via == "tag" else 1)
    first, last = samples[0][0], samples[-1][0]
    warm_at = next(i for i, (t, _) in enumerate(samples) if t - first >= share * (last - first))
    warm, end, peak = samples[warm_at][1], samples[-1][1], max(r for _, r in samples)
    tenths = [round(samples[min(len(samples) - 1, int(len(samples) * k / 10))][1], 1) for k in range(11)]
    result = {"via": args.via, "documents": args.documents, "seconds": round(seconds, 1),
              "documents_per_s": round(args.documents / seconds), "rss_after_warmup_mb": round(warm, 1),
              "rss_end_mb": round(end, 1), "rss_peak_mb": round(peak, 1), "growth": round(end / warm - 1, 4),
              "rss_by_tenth_mb": tenths}
    print(json.dumps(result))
    print(f"{args.documents:,} documents via {args.via} in {seconds:.0f} s ({result['documents_per_s']:,}/s); RSS "
          f"{warm:.1f} MB after warm-up, {end:.1f} MB at the end ({100 * (end / warm - 1):+.1f}%), peak {peak:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(0 if end <= 1.1 * warm else 1)


if __name__ == "__main__":
    main()
