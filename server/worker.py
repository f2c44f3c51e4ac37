"""The training worker: runs in its own process (spawned), so a crash or a runaway job
cannot take down or stall tagging. It reports progress over a multiprocessing queue and
writes its log to ``log.txt`` in the job directory. A worker whose server died (SIGKILL,
the OOM killer) notices at its next progress report and stops, instead of training for no one."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any


def run(job_dir: str, config_json: str, train: str, train_format: dict[str, Any], dev: str,
        dev_format: dict[str, Any], threads: int, events, base: str | None = None,
        teachers: list[str] | None = None, search: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None, auxiliary: list[tuple[str, dict[str, Any]]] | None = None) -> None:
    directory = Path(job_dir)
    parent = os.getppid()

    def report(kind: str, record: dict[str, Any]) -> None:
        if os.getppid() != parent:  # re-parented: the server is gone
            raise SystemExit("the server went away; stopping")
        events.put((kind, record))

    log = open(directory / "log.txt", "a", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr = log
    try:
        import torch

        from tagger.config import CorpusFormat, TaggerConfig
        from tagger.data.datasets import task_examples, tasks_for, with_auxiliary
        from tagger.training.train import train as run_training

        if threads:
            torch.set_num_threads(threads)
        from tagger.model.directory import load_model

        config = TaggerConfig.model_validate_json(config_json)
        config.data = CorpusFormat.model_validate(train_format)
        sources = [(path, CorpusFormat.model_validate(fmt)) for path, fmt in auxiliary or []]  # train.auxiliary's
        progress = {"progress": False, "on_epoch": lambda record: report("epoch", record),
                    "on_step": lambda record: report("step", record)}
        if teachers or search:
            if teachers:
                dev_report = _distill(config, teachers, train, dev, CorpusFormat.model_validate(dev_format), directory,
                                      progress).metrics["dev"]
            else:
                dev_report = _search(config, search, train, dev, CorpusFormat.model_validate(dev_format), directory,
                                     lambda record: report("trial", record), sources)
            events.put(("done", {"dev": dev_report}))
            print("done", flush=True)
            return
        base_model = load_model(base) if base else None
        if base_model is not None:
            config.model = base_model.config.model
        elif not config.model.tasks:
            config.model.tasks = tasks_for(train, config.data, [None])
        train_examples, dev_examples = task_examples(train, dev, config, CorpusFormat.model_validate(dev_format))
        if base_model is None and overrides is not None:  # the built-in recipe that fits the corpus
            from tagger.training.recipes import fit

            config = fit(config, train_examples, overrides)
            print(f"recipe: {config.recipe}", flush=True)
            report("plan", {"epochs": config.train.epochs})  # the recipe's, unless overridden
        train_examples, added = with_auxiliary(config, train_examples, sources)
        if added:
            print(added, flush=True)
        print(f"training on {len(train_examples)} sentences, {len(dev_examples)} dev sentences", flush=True)
        result = run_training(config, train_examples, dev_examples, directory / "model", base=base_model, **progress)
        events.put(("done", {"dev": result.metrics["dev"]}))
        print("done", flush=True)
    except BaseException as error:  # reported to the server, then the process ends
        traceback.print_exc()
        events.put(("error", f"{type(error).__name__}: {error}"))
    finally:
        log.flush()


def _distill(config, teachers: list[str], train: str, dev: str, dev_format, directory: Path, progress: dict[str, Any]):
    """A distillation job: the student's tasks are the teachers'; the corpora's gold labels
    count for the tasks they label."""
    from tagger.data.datasets import corpus_examples
    from tagger.model.directory import load_model
    from tagger.training.distill import assign_tasks, distill, student_tasks

    loaded = [load_model(t) for t in teachers]
    tasks = student_tasks(loaded, assign_tasks(loaded, [t.name for t in config.model.tasks] or None))
    del loaded
    train_examples = corpus_examples([train], tasks, config.data)
    dev_examples = corpus_examples([dev], tasks, dev_format)
    print(f"distilling from {len(teachers)} teacher(s) on {len(train_examples)} sentences, "
          f"{len(dev_examples)} dev sentences", flush=True)
    return distill(config, teachers, train_examples, dev_examples, directory / "model", **progress)


def _search(config, search: dict[str, Any], train: str, dev: str, dev_format, directory: Path, report,
            sources: list[tuple[str, Any]]) -> dict[str, Any]:
    """A search job: ``tagger tune`` in this process (trials one after another, so cancelling
    the job stops every trial); the best trial's model files go to ``directory/model``."""
    import json
    import shutil
    import time

    from tagger.data.datasets import task_examples, tasks_for, with_auxiliary
    from tagger.training.tune import TuneSettings, tune

    if not config.model.tasks:
        config.model.tasks = tasks_for(train, config.data, [None])
    train_examples, dev_examples = task_examples(train, dev, config, dev_format)
    train_examples, added = with_auxiliary(config, train_examples, sources)
    if added:
        print(added, flush=True)
    settings = TuneSettings(trials=search["trials"], time_budget=search.get("seconds") or None, jobs=1,
                            seed=config.train.seed)
    print(f"searching {settings.trials} trials on {len(train_examples)} sentences, {len(dev_examples)} dev sentences",
          flush=True)
    started = time.time()

    def on_trial(info: dict[str, Any]) -> None:
        left = settings.time_budget - (time.time() - started) if settings.time_budget else None
        report({"trial": len(info["trials"]), "trials": settings.trials,
                "best": info["best"]["dev"] if info["best"] else None, "seconds_left": left})
        last = info["trials"][-1] if info["trials"] else {}
        print(f"trial {last.get('number')}: {last.get('state', '?').lower()}, dev {last.get('dev') or 0:.4f}", flush=True)

    output = directory / "search"
    tune(config, train_examples, dev_examples, output, settings, progress=False, on_trial=on_trial)
    model = directory / "model"
    model.mkdir(exist_ok=True)
    for item in output.iterdir():
        if item.is_file() and item.name != "study.sqlite":
            shutil.copy2(item, model / item.name)
    return json.loads((model / "metrics.json").read_text())["dev"]
