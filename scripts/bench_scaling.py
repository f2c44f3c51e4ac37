"""Scaling figures for docs/scaling.md: data-parallel training speed-up and Ray batch tagging.

Usage: python scripts/bench_scaling.py train|ray|all   (a few minutes on 2 cores; run it on a quiet machine)

train: UPOS on the first 4,000 EWT training sentences (en-pos architecture, no vectors), 2 epochs,
       as 1 process x 1 thread, 1 process x 2 threads and torchrun 2 processes x 1 thread.
ray:   en-ner over the raw EWT test text (4 copies by default, 8 files), `tagger tag` against
       `tagger tag --engine ray` with 2 actors; wall time including start-up, and Ray's time
       once started.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EWT = DATA / "ud-english-ewt"
BIN = Path(sys.executable).parent


def head(source: Path, target: Path, sentences: int) -> Path:
    blocks = source.read_text(encoding="utf-8").split("\n\n")[:sentences]
    target.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return target


def bench_train(work: Path) -> str:
    train = head(EWT / "en_ewt-ud-train.conllu", work / "train.conllu", 4000)
    dev = head(EWT / "en_ewt-ud-dev.conllu", work / "dev.conllu", 200)
    common = ["train", "--train", str(train), "--dev", str(dev), "--config", str(ROOT / "configs" / "en-pos.toml"),
              "--epochs", "2", "--quiet", "--set", "model.vectors=''", "--set", "train.patience=5"]
    runs = {
        "1 process x 1 thread": ([str(BIN / "tagger")], {"OMP_NUM_THREADS": "1"}, ["--set", "train.threads=1"]),
        "1 process x 2 threads": ([str(BIN / "tagger")], {}, ["--set", "train.threads=2"]),
        "torchrun 2 processes x 1 thread": ([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python",
                                             str(BIN / "tagger")], {"OMP_NUM_THREADS": "1"}, ["--set", "train.threads=1"]),
    }
    rows, base = [], None
    for name, (prefix, env, extra) in runs.items():
        output = work / name.replace(" ", "-")
        started = time.perf_counter()
        subprocess.run([*prefix, *common, "--output", str(output), *extra], check=True, env={**os.environ, **env},
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        metrics = json.loads((output / "metrics.json").read_text())
        speed = metrics["train_tokens"] * metrics["epochs_run"] / metrics["train_seconds"]
        base = base or speed
        rows.append(f"| {name} | {speed:,.0f} | {speed / base:.2f}x | {wall:.0f} | "
                    f"{100 * metrics['dev']['upos']['accuracy']:.2f} |")
    return "\n".join(["| run | training tokens/s | speed-up | wall s (start-up included) | dev UPOS after 2 epochs |",
                      "|---|---:|---:|---:|---:|", *rows])


def bench_ray(work: Path, copies: int = 4) -> str:
    sys.path.insert(0, str(ROOT))
    from tagger.data.readers import read_conllu

    texts = [s.text for s in read_conllu(EWT / "en_ewt-ud-test.conllu")] * copies
    inputs = work / "inputs"
    inputs.mkdir()
    per_file = len(texts) // 8 + 1
    for i in range(8):
        (inputs / f"part-{i}.txt").write_text("\n".join(texts[i * per_file:(i + 1) * per_file]) + "\n", encoding="utf-8")
    (work / "all.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    tokens = None
    model = str(ROOT / "models" / "en-ner")
    started = time.perf_counter()
    subprocess.run([str(BIN / "tagger"), "tag", "--model", model, "--input", str(work / "all.txt"),
                    "--output", str(work / "local.jsonl")], check=True)
    local = time.perf_counter() - started
    tokens = sum(len(json.loads(line)["tokens"]) for line in (work / "local.jsonl").open())
    code = ("import sys, time, ray; from tagger.engines import ray_engine; t = time.perf_counter(); "
            "ray.init(include_dashboard=False, configure_logging=False); s = time.perf_counter(); "
            "ray_engine.tag_files(sys.argv[1], sys.argv[2], sys.argv[3], num_actors=2); "
            "print(time.perf_counter() - s, s - t)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, model, str(inputs), str(work / "ray-out")], check=True,
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    wall = time.perf_counter() - started
    after_start, start = (float(x) for x in done.stdout.split())
    return "\n".join([
        f"{len(texts):,} documents, {tokens:,} tokens",
        "",
        "| run | wall s | tokens/s (wall) | tokens/s once started |",
        "|---|---:|---:|---:|",
        f"| `tagger tag`, 1 process (torch threads: all cores) | {local:.1f} | {tokens / local:,.0f} | |",
        f"| `tagger tag --engine ray --num-actors 2` | {wall:.1f} | {tokens / wall:,.0f} | {tokens / after_start:,.0f} "
        f"(Ray start {start:.1f} s) |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "ray", "all"])
    parser.add_argument("--copies", type=int, default=4, help="copies of the EWT test text for the Ray run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.what in ("train", "all"):
            (work / "train").mkdir()
            print(bench_train(work / "train"), flush=True)
        if args.what in ("ray", "all"):
            (work / "ray").mkdir()
            print(bench_ray(work / "ray", args.copies), flush=True)


if __name__ == "__main__":
    main()
