"""Retraining on small corpora: the settings a user gets, measured (issue 18's table).

For each corpus (1,000- and 3,000-sentence slices of UD English-EWT for UPOS and of
Universal NER English-EWT; WNUT-17 with ``--corpora wnut``) this trains

- ``before``: the settings plain ``tagger train`` used before built-in recipes (an empty
  ``--config``: the config defaults, no vectors),
- ``default``: plain ``tagger train`` now (the built-in recipe it picks),
- ``tuned``: ``tagger tune`` for ``--minutes`` with ``--jobs 2``,

and scores each on the corpus's dev and test sets (the test set once, at the end; every
choice is made on dev). A slice is the first N sentences of the training file (documents
stay whole up to the cut). Runs are kept in ``OUTPUT`` and reused when rerun (``--fresh``
retrains); the table is printed as Markdown and saved as ``OUTPUT/results.json``.

    python scripts/retrain_bench.py --output runs/slices --minutes 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TAGGER = [sys.executable, "-m", "tagger.cli"]


def corpora(sizes: list[int], names: list[str]) -> list[dict]:
    """Each corpus: name, train/dev/test files, the label column flags and a slice size."""
    out = []
    ewt, uner = DATA / "ud-english-ewt", DATA / "uner-english-ewt"
    for size in sizes:
        if "ewt" in names:
            out.append({"name": f"EWT UPOS, {size:,} sentences", "key": f"ewt-{size}", "size": size,
                        "train": ewt / "en_ewt-ud-train.conllu", "dev": ewt / "en_ewt-ud-dev.conllu",
                        "test": ewt / "en_ewt-ud-test.conllu", "flags": ["--label-column", "upos"]})
        if "uner" in names:
            out.append({"name": f"Universal NER EWT, {size:,} sentences", "key": f"uner-{size}", "size": size,
                        "train": uner / "en_ewt-ud-train.iob2", "dev": uner / "en_ewt-ud-dev.iob2",
                        "test": uner / "en_ewt-ud-test.iob2", "flags": []})
    if "wnut" in names:
        wnut = DATA / "wnut17"
        out.append({"name": "WNUT-17 (3,394 tweets)", "key": "wnut", "size": None, "train": wnut / "wnut17train.conll",
                    "dev": wnut / "emerging.dev.conll", "test": wnut / "emerging.test.annotated", "flags": []})
    return out


def write_slice(source: Path, size: int, target: Path) -> None:
    """The first ``size`` sentences of a blank-line-separated corpus file, comments kept."""
    blocks, current = [], []
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                current.append(line)
            elif current:
                blocks.append(current)
                current = []
                if sum(any(not l.startswith("#") for l in b) for b in blocks) == size:
                    break
    if current and len(blocks) < size:
        blocks.append(current)
    target.write_text("".join("".join(b) + "\n" for b in blocks), encoding="utf-8")


def run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, command))}; see {log}")
    return time.perf_counter() - start


def score(model: Path, data: Path, flags: list[str]) -> float:
    """Test/dev score in percent: F1 for a span task, token accuracy for a tag task."""
    done = subprocess.run([*TAGGER, "evaluate", "--model", str(model), "--data", str(data), *flags, "--json"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    report = next(iter(report.values())) if "f1" not in report and "accuracy" not in report else report
    return 100 * (report["f1"] if "f1" in report else report["accuracy"])


def recipe_of(model: Path) -> str:
    recipe = json.loads((model / "config.json").read_text()).get("recipe") or ""
    return recipe.split(" ")[0] if recipe else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "slices")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--corpora", nargs="+", default=["ewt", "uner"], choices=["ewt", "uner", "wnut"])
    parser.add_argument("--minutes", type=float, default=8.0, help="time budget of each tagger tune run")
    parser.add_argument("--settings", nargs="+", default=["before", "default", "tuned"],
                        choices=["before", "default", "tuned"])
    parser.add_argument("--fresh", action="store_true", help="retrain runs that exist")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    empty = args.output / "empty.toml"
    empty.write_text("# the config defaults: what plain tagger train used before built-in recipes\n")
    results_file = args.output / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for corpus in corpora(args.sizes, args.corpora):
        train = corpus["train"]
        if corpus["size"]:
            train = args.output / f"{corpus['key']}.train{train.suffix}"
            write_slice(corpus["train"], corpus["size"], train)
        for setting in args.settings:
            name = f"{corpus['key']}-{setting}"
            model, log = args.output / name, args.output / f"{name}.log"
            if args.fresh and model.exists():
                shutil.rmtree(model)
            base = ["--train", str(train), "--dev", str(corpus["dev"]), "--output", str(model), *corpus["flags"]]
            if setting == "before":
                command = [*TAGGER, "train", *base, "--config", str(empty), "--quiet"]
            elif setting == "default":
                command = [*TAGGER, "train", *base, "--quiet"]
            else:
                command = [*TAGGER, "tune", *base, "--trials", "100", "--time-budget", f"{int(args.minutes * 60)}s",
                           "--jobs", "2", "--quiet"]
            if not (model / "weights.safetensors").exists():
                print(f"{name}: training", flush=True)
                seconds = run(command, log)
                results[name] = {"seconds": round(seconds)}
            entry = results.setdefault(name, {})
            entry.update(corpus=corpus["name"], setting=setting, recipe=recipe_of(model),
                         dev=round(score(model, corpus["dev"], corpus["flags"]), 2),
                         test=round(score(model, corpus["test"], corpus["flags"]), 2),
                         command=" ".join(str(c) for c in command[2:]).replace(str(ROOT) + "/", ""))
            if setting == "tuned" and (model / "search.json").exists():
                entry["trials"] = len(json.loads((model / "search.json").read_text())["trials"])
            results_file.write_text(json.dumps(results, indent=1))
            print(f"{name}: dev {entry['dev']:.2f} test {entry['test']:.2f} ({entry.get('seconds', '?')} s)", flush=True)
    print(table(results, args.minutes))


def table(results: dict, minutes: float) -> str:
    """One row per corpus: each setting's dev / test (and the recipe the default picked)."""
    rows: dict[str, dict] = {}
    for entry in results.values():
        rows.setdefault(entry["corpus"], {})[entry["setting"]] = entry
    lines = ["| corpus | before: config defaults (dev / test) | now: plain `tagger train` (recipe; dev / test) "
             f"| `tagger tune`, {minutes:g} min, 2 jobs (trials; dev / test) |", "|---|---:|---:|---:|"]
    for corpus, settings in rows.items():
        cells = []
        for setting in ("before", "default", "tuned"):
            entry = settings.get(setting)
            if entry is None:
                cells.append("")
                continue
            what = {"default": f"{entry['recipe']}; ", "tuned": f"{entry.get('trials', '?')} trials; "}.get(setting, "")
            cells.append(f"{what}{entry['dev']:.2f} / {entry['test']:.2f}")
        lines.append(f"| {corpus} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
