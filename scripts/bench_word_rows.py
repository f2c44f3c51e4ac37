"""Training time with a large word table: the word rows training tokens use, handed to the
optimizer and looked up by the training steps (what ``tagger train`` does), against the
optimizer given those rows but the steps looking up the whole table, and against the whole
table for both (what it did before), on WNUT-17 with every GloVe word kept (400,000 rows;
the corpus's tokens use about 13,000). All three train the same model bit for bit
(tests/tagger/test_train.py); the runs take turns, one epoch each, and the table prints the
seconds of each (the fastest of its runs) and the ratio to the first.

    python scripts/bench_word_rows.py --runs 2
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WNUT = ROOT.parent / "shared" / "data" / "wnut17"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each way, taking turns")
    parser.add_argument("--max-vectors", type=int, default=400_000)
    parser.add_argument("--sentences", type=int, default=None, help="the first N training sentences (default: all)")
    args = parser.parse_args()

    from tagger.config import load_config
    from tagger.data.datasets import task_examples, tasks_for
    from tagger.training import train as training
    from tagger.training.recipes import fit

    overrides = {"model.max_vectors": args.max_vectors, "train.epochs": 1}
    config = load_config(None, overrides)
    config.model.tasks = tasks_for(WNUT / "wnut17train.conll", config.data, [None], "crf")
    train_data, dev_data = task_examples(WNUT / "wnut17train.conll", WNUT / "emerging.dev.conll", config)
    train_data = train_data[: args.sentences]
    config = fit(config, train_data, overrides)
    real, looked_up = training._WordRowsInUse.of, training._WordRowsInUse.looked_up
    ways = {"rows in use: optimizer and lookup": (real, looked_up),
            "rows in use: optimizer; lookup: whole table": (real, lambda self: contextlib.nullcontext()),
            "whole table": (classmethod(lambda cls, m, d: None), looked_up)}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for run in range(args.runs):
        for way, (of, lookup) in ways.items():
            training._WordRowsInUse.of, training._WordRowsInUse.looked_up = of, lookup
            with tempfile.TemporaryDirectory() as output:
                training.train(config, train_data, dev_data[:50], output, progress=False,
                               on_epoch=lambda record: seconds[way].append(record["seconds"]))
            print(f"run {run + 1}, {way}: {seconds[way][-1]:.1f} s", flush=True)
    training._WordRowsInUse.of, training._WordRowsInUse.looked_up = real, looked_up
    best = {way: min(values) for way, values in seconds.items()}
    first = next(iter(best.values()))
    print("\n| word table | epoch seconds (min of runs) | against the first |\n|---|---:|---:|")
    for way, value in best.items():
        print(f"| {way} | {value:.1f} | {value / first:.2f}x |")


if __name__ == "__main__":
    main()
