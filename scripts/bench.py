"""Tagging speed on the EWT test set: tokens/s (median of N runs) and peak RSS.

Usage: python scripts/bench.py [--model DIR] [--runs 5] [--threads N]

Without --model it uses models/en-pos if present, else trains a reference model once
(2,000 EWT sentences, 2 epochs) into runs/bench-model and reuses it afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ud-english-ewt"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def reference_model() -> Path:
    bundled = ROOT / "models" / "en-pos"
    if (bundled / "weights.safetensors").exists():
        return bundled
    target = ROOT / "runs" / "bench-model"
    if not (target / "metrics.json").exists():
        print(f"training a reference model into {target} (about a minute) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "tagger.cli", "train", "--train", str(DATA / "en_ewt-ud-train.conllu"),
                        "--dev", str(DATA / "en_ewt-ud-dev.conllu"), "--output", str(target),
                        "--max-sentences", "2000", "--epochs", "2", "--quiet"], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from tagger import Tagger
    from tagger.predict import predict
    from tagger.readers import read_conllu

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model or reference_model()
    tagger = Tagger.load(model_dir)
    test = list(read_conllu(DATA / "en_ewt-ud-test.conllu"))
    sentences = [s.tokens for s in test]
    texts = [s.text or " ".join(s.tokens) for s in test]
    tokens = sum(map(len, sentences))

    def timed(fn) -> list[float]:
        fn()  # warm-up
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return times

    rows = [
        ("gold tokens, labels + scores", timed(lambda: predict(tagger.model, sentences, scores=True))),
        ("gold tokens, labels only", timed(lambda: predict(tagger.model, sentences, scores=False))),
        ("raw text (spaCy tokenization included)", timed(lambda: tagger.tag_texts(texts, scores=True))),
    ]
    single = []
    for text in texts[:300]:
        started = time.perf_counter()
        tagger.tag(text)
        single.append((time.perf_counter() - started) * 1000)
    single.sort()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"# tagger benchmark: {model_dir} on EWT test ({len(sentences)} sentences, {tokens} tokens)")
    print(f"# CPU: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, Python {platform.python_version()}")
    print(f"| mode | median s | tokens/s (median of {args.runs}) |")
    print("|---|---:|---:|")
    for name, times in rows:
        median = statistics.median(times)
        print(f"| {name} | {median:.3f} | {tokens / median:,.0f} |")
    print(f"\nsingle-sentence latency, raw text, in-process: p50 {single[len(single) // 2]:.2f} ms, "
          f"p99 {single[int(len(single) * 0.99) - 1]:.2f} ms")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
