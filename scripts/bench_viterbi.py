"""Viterbi's forward pass in torch against NumPy, end to end: ``Tagger.tag_texts`` on every
EWT text (train, dev and test: 16,622 texts), the two paths taking turns in one process.

Usage: python scripts/bench_viterbi.py [--models en-core en-pos en-joint en-ner] [--rounds 4]

Full batches run the recursion in torch (``tagger.model.crf.TORCH_VITERBI_ROWS`` and
``TORCH_VITERBI_ELEMENTS``); setting both out of reach gives the NumPy loop, which small
batches always use. Each round times both, in alternating order; the speed-up is taken
within a round, where the machine's speed is one, and the table gives its median over
rounds with the lowest and highest, and the median tokens/s of each path. The paths find
the same labels (tests/tagger/test_crf.py); this measures only time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from tagger import Tagger
from tagger.data.readers import read_conllu
from tagger.model import crf

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT.parent / "shared" / "data" / "ud-english-ewt"
PATHS = {"numpy": (10**9, 10**9), "torch": (crf.TORCH_VITERBI_ROWS, crf.TORCH_VITERBI_ELEMENTS)}


def measure(name: str, texts: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds per pass for each path, ``rounds`` passes each, alternating which goes first."""
    tagger = Tagger.load(ROOT / "models" / name)
    tagger.tag_texts(texts[:500], scores=False)  # warm-up
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    for round_ in range(rounds):
        for path in (PATHS if round_ % 2 == 0 else reversed(list(PATHS))):
            crf.TORCH_VITERBI_ROWS, crf.TORCH_VITERBI_ELEMENTS = PATHS[path]
            started = time.perf_counter()
            tagger.tag_texts(texts, scores=False)
            times[path].append(time.perf_counter() - started)
    crf.TORCH_VITERBI_ROWS, crf.TORCH_VITERBI_ELEMENTS = PATHS["torch"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["en-core", "en-pos", "en-joint", "en-ner"])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sentences = [s for split in ("train", "dev", "test") for s in read_conllu(EWT / f"en_ewt-ud-{split}.conllu", None)]
    texts = [s.text or " ".join(s.tokens) for s in sentences]
    tokens = sum(len(s.tokens) for s in sentences)  # gold tokens, as scripts/bench.py counts them
    print(f"# tag_texts on {len(texts):,} EWT texts, Viterbi's forward pass in NumPy or torch, {args.rounds} rounds; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| model | speed-up (median, lowest to highest) | tokens/s NumPy | tokens/s torch |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        times = measure(name, texts, args.rounds)
        ratios = [a / b for a, b in zip(times["numpy"], times["torch"])]
        print(f"| {name} | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{tokens / statistics.median(times['numpy']):,.0f} | {tokens / statistics.median(times['torch']):,.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
