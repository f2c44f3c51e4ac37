"""Tagging speed, side by side with spaCy, on the raw texts of the EWT test set.

Usage: python scripts/bench.py [--runs 5] [--threads N]

One table from one run: tokens/s tagging the EWT test texts (tokenization included) for
models/en-pos, en-ner and en-joint (torch, and NAME/onnx: the encoder in ONNX Runtime, when
tagger[onnx] is installed; NAME/member-1: an ensemble's first member alone) and for spaCy's efficiency tagger and tagger+NER (built
by scripts/spacy_baseline.py), median of --runs; single-sentence latency in-process (p50,
p99); peak RSS; the test accuracy of each of our models. Each system runs in its own
process, so RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EWT_TEST = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-test.conllu"
OURS = ["en-pos", "en-ner", "en-joint"]
SPACY = {"spacy-tagger": ["tagger"], "spacy-tagger-ner": ["tagger", "ner"]}
COMPARE = {"en-pos": "spacy-tagger", "en-joint": "spacy-tagger-ner", "en-ner": "spacy-tagger-ner"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(name: str, runs: int, threads: int) -> dict:
    """Time one system in this process; returns its row."""
    import torch

    from tagger.readers import read_conllu

    if threads:
        torch.set_num_threads(threads)
    texts = [s.text or " ".join(s.tokens) for s in read_conllu(EWT_TEST, None)]
    if name in SPACY:
        import spacy

        sys.path.insert(0, str(ROOT / "scripts"))
        from spacy_baseline import build

        nlp = spacy.load(build(name.removeprefix("spacy-"), SPACY[name]))
        nlp.add_pipe("sentencizer", first=True) if "parser" not in nlp.pipe_names else None

        def tag_all() -> int:
            return sum(len(doc) for doc in nlp.pipe(texts, batch_size=256))

        def tag_one(text: str) -> None:
            nlp(text)

        accuracy = None
    else:
        from tagger import Tagger

        model, backend = name.removesuffix("/onnx"), "onnx" if name.endswith("/onnx") else "torch"
        tagger = Tagger.load(ROOT / "models" / model, backend)

        def tag_all() -> int:
            return sum(len(s.tokens) for d in tagger.tag_texts(texts, scores=False) for s in d.sentences)

        def tag_one(text: str) -> None:
            tagger.tag(text, scores=False)

        card = json.loads((ROOT / "models" / model / "metrics.json").read_text())
        accuracy = {t: round(100 * (r["f1"] if "f1" in r else r["accuracy"]), 2) for t, r in card.get("test", {}).items()}
    tokens = tag_all()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        tag_all()
        times.append(time.perf_counter() - started)
    latencies = []
    for text in texts[:500]:
        started = time.perf_counter()
        tag_one(text)
        latencies.append(1000 * (time.perf_counter() - started))
    latencies.sort()
    return {"name": name, "tokens": tokens, "tokens_per_s": tokens / statistics.median(times),
            "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.runs, args.threads)))
        return
    from tagger.artifact import is_model_directory
    from tagger.runtime import onnx_available

    rows = {}
    ours = [n for n in OURS if is_model_directory(ROOT / "models" / n)]
    # an ensemble's first member alone: what the ensemble costs and gains
    ours += [f"{n}/member-1" for n in ours if (ROOT / "models" / n / "ensemble.json").exists()]
    for name in [*ours, *([f"{n}/onnx" for n in ours] if onnx_available() else []), *SPACY]:
        output = subprocess.run([sys.executable, __file__, "--one", name, "--runs", str(args.runs),
                                 "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows[name] = json.loads(output.stdout.strip().splitlines()[-1])
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"# tagging the raw EWT test texts ({rows[next(iter(rows))]['tokens']:,} tokens, tokenization included), "
          f"median of {args.runs} runs")
    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch threads {threads}, torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    print("| system | tokens/s | vs spaCy | p50 ms | p99 ms | peak RSS MB | test scores |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        ratio = ""
        other = COMPARE.get(name.partition("/")[0])
        if other in rows:
            ratio = f"{row['tokens_per_s'] / rows[other]['tokens_per_s']:.2f}x {other}"
        scores = ", ".join(f"{t} {v}" for t, v in (row["accuracy"] or {}).items())
        print(f"| {name} | {row['tokens_per_s']:,.0f} | {ratio} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
              f"{row['rss_mb']:.0f} | {scores} |")


if __name__ == "__main__":
    main()
