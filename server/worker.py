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
        dev_format: dict[str, Any], threads: int, events, base: str | None = None) -> None:
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
        from tagger.datasets import task_examples, tasks_for
        from tagger.train import train as run_training

        if threads:
            torch.set_num_threads(threads)
        from tagger.artifact import load_model

        config = TaggerConfig.model_validate_json(config_json)
        config.data = CorpusFormat.model_validate(train_format)
        base_model = load_model(base) if base else None
        if base_model is not None:
            config.model = base_model.config.model
        elif not config.model.tasks:
            config.model.tasks = tasks_for(train, config.data, [None])
        train_examples, dev_examples = task_examples(train, dev, config, CorpusFormat.model_validate(dev_format))
        print(f"training on {len(train_examples)} sentences, {len(dev_examples)} dev sentences", flush=True)
        result = run_training(config, train_examples, dev_examples, directory / "model", progress=False,
                              on_epoch=lambda record: report("epoch", record),
                              on_step=lambda record: report("step", record), base=base_model)
        events.put(("done", {"dev": result.metrics["dev"]}))
        print("done", flush=True)
    except BaseException as error:  # reported to the server, then the process ends
        traceback.print_exc()
        events.put(("error", f"{type(error).__name__}: {error}"))
    finally:
        log.flush()
