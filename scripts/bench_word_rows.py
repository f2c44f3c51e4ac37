"""Training time with a large word table: the optimizer given only the word rows training
tokens use (what ``tagger train`` does) against the whole table (what it did before), on
WNUT-17 with every GloVe word kept (400,000 rows; the corpus's tokens use about 13,000).
Both train the same model bit for bit (tests/tagger/test_train.py); the runs take turns,
one epoch each, and the table prints the seconds of each and the ratio of the fastest.

    python scripts/bench_word_rows.py --runs 2
"""

from __future__ import annotations

import argparse
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
    real = training._WordRowsInUse.of
    seconds: dict[str, list[float]] = {"rows in use": [], "whole table": []}
    for run in range(args.runs):
        for way in seconds:
            training._WordRowsInUse.of = real if way == "rows in use" else classmethod(lambda cls, m, d: None)
            with tempfile.TemporaryDirectory() as output:
                training.train(config, train_data, dev_data[:50], output, progress=False,
                               on_epoch=lambda record: seconds[way].append(record["seconds"]))
            print(f"run {run + 1}, {way}: {seconds[way][-1]:.1f} s", flush=True)
    training._WordRowsInUse.of = real
    best = {way: min(values) for way, values in seconds.items()}
    print("\n| optimizer gets | epoch seconds (min of runs) |\n|---|---:|")
    for way, value in best.items():
        print(f"| {way} | {value:.1f} |")
    print(f"\nwhole table / rows in use: {best['whole table'] / best['rows in use']:.2f}x")


if __name__ == "__main__":
    main()
