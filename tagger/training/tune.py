"""Hyperparameter search: ``tagger tune``.

Optuna's TPE sampler proposes settings from a search space; each trial trains with
:func:`tagger.training.train.train` and reports its dev score after every epoch, so a median pruner
stops trials that trail earlier ones at the same epoch. The first trial is the recipe itself
(:func:`starting_point`), so a search that finishes it never ends below the recipe on dev.
The study lives in SQLite
(``OUTPUT/study.sqlite``): running the same search again continues it (trials that were
running when it stopped are marked failed and run again). ``jobs`` > 1 runs that many
worker processes on the one study, each with its share of the cores.

The output directory ends up as the best trial's model (loadable like any other), with
``search.json`` (every trial: settings, dev score per epoch, state), ``search-history.png``
and a Search section in its card. Trials train in ``OUTPUT/trials/N``; a pruned or failed
trial's directory is removed.

With ``engine="ray"`` the same space and trial function run on Ray Tune (the ``ray``
extra): Optuna's TPE as its search algorithm, ASHA stopping trials early on the per-epoch dev
score, one CPU per trial (``jobs`` at once), on the cluster ``RAY_ADDRESS`` names or a local
Ray. Ray keeps the experiment in ``OUTPUT/ray``; the same command resumes it. Trials write
to ``OUTPUT/trials``, so on a cluster OUTPUT must be storage every node sees.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tagger.config import ConfigError, TaggerConfig, load_config
from tagger.data.batching import Example

STUDY = "study.sqlite"
SEARCH = "search.json"
HISTORY = "search-history.png"
TRIALS = "trials"


class Param(BaseModel):
    """One searched setting: a range (``low``..``high``, ``log`` scale, ``integer``) or ``choices``."""

    model_config = ConfigDict(extra="forbid")

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[float | int | str | bool] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> "Param":
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give either choices (non-empty) or low and high")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError("give low <= high, or choices")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


# What `tagger tune` searches without --space: the settings that move dev scores most on
# small and noisy corpora (dropouts, learning rate, sizes), around the bundled recipes.
DEFAULT_SPACE: dict[str, Param] = {
    "train.lr": Param(low=5e-4, high=5e-3, log=True),
    "model.dropout": Param(low=0.2, high=0.6),
    "model.word_dropout": Param(low=0.0, high=0.15),
    "model.encoder.hidden": Param(choices=[100, 200, 256]),
    "model.char.hidden": Param(choices=[32, 50, 64]),
    "train.batch_size": Param(choices=[10, 16, 32]),
}


def load_space(path: str | Path | None) -> dict[str, Param]:
    """A search space from TOML (``["train.lr"]`` tables with low/high/log/integer or
    choices), checked against the config: every key must be a setting; None: the default."""
    if path is None:
        return dict(DEFAULT_SPACE)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        space = {key: Param.model_validate(value) for key, value in raw.items()}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    except ValidationError as error:
        raise ConfigError(f"{path}: invalid search space: {error.errors()[0]['msg']} at "
                          f"{'.'.join(map(str, error.errors()[0]['loc']))}") from None
    if not space:
        raise ConfigError(f"{path}: the search space is empty")
    for key, param in space.items():  # each setting must exist and accept the space's values
        sample = param.choices[0] if param.choices is not None else (int(param.low) if param.integer else param.low)
        load_config(None, {key: sample})
    return space


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """One trial's settings, drawn by Optuna from ``space``."""
    values = {}
    for key, param in space.items():
        if param.choices is not None:
            values[key] = trial.suggest_categorical(key, param.choices)
        elif param.integer:
            values[key] = trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
        else:
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
    return values


def fixed_by_init(config: TaggerConfig, space: dict[str, Param], say: bool = False) -> dict[str, Param]:
    """``space`` without the settings ``train.init_from`` fixes (the init model's architecture:
    :data:`tagger.training.train.ARCHITECTURE`): searching them would search nothing."""
    if not config.train.init_from:
        return space
    from tagger.training.train import ARCHITECTURE

    fixed = [key for key in space if key.startswith("model.") and key.split(".")[1] in ARCHITECTURE]
    if fixed and say:
        print(f"not searched, fixed by train.init_from: {', '.join(fixed)}", file=sys.stderr)
    kept = {key: param for key, param in space.items() if key not in fixed}
    if not kept:
        raise ConfigError(f"every searched setting is fixed by train.init_from ({', '.join(fixed)})")
    return kept


def starting_point(config: TaggerConfig, space: dict[str, Param]) -> dict[str, Any]:
    """The config's own values of the searched settings, where the space holds them: the first
    trial trains the recipe itself, so a search never ends below it on dev (if that trial
    finishes within the budget). Settings the space cannot hold are left to the sampler."""
    values, settings = {}, config.model_dump()
    for key, param in space.items():
        value: Any = settings
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or isinstance(value, (dict, list)):
            continue
        if param.choices is not None:
            if value in param.choices:
                values[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and param.low <= value <= param.high:
            if not param.integer or float(value).is_integer():
                values[key] = int(value) if param.integer else float(value)
    return values


class TuneSettings(BaseModel):
    """A search: how many trials, for how long, in how many processes."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(20, ge=1, description="trials in all (finished and pruned), counting a resumed study's")
    time_budget: float | None = Field(None, gt=0, description="seconds for this run; running trials stop at it")
    jobs: int = Field(1, ge=1, description="worker processes, each training one trial at a time")
    seed: int = 1
    engine: Literal["optuna", "ray"] = "optuna"
    warmup_epochs: int = Field(3, ge=0, description="epochs before a trial may be pruned")


class _Stop(Exception):
    """A trial stopped by the time budget."""


def _objective(config: TaggerConfig, space: dict[str, Param], train_data: Sequence[Example],
               dev_data: Sequence[Example], output: Path, deadline: float | None, warmup: int) -> Callable:
    import optuna

    from tagger.training.train import dev_score, train

    def objective(trial) -> float:
        values = suggest(trial, space)
        trial_config = load_config(None, values, base=config.model_dump(mode="json"))
        directory = output / TRIALS / str(trial.number)
        shutil.rmtree(directory, ignore_errors=True)

        def on_epoch(record: dict[str, Any]) -> None:
            trial.report(record["dev"], record["epoch"])
            if record["epoch"] > warmup and trial.should_prune():
                raise optuna.TrialPruned(f"dev {record['dev']:.4f} at epoch {record['epoch']} trails the median")
            if deadline is not None and time.time() > deadline:
                raise _Stop()

        try:
            result = train(trial_config, train_data, dev_data, directory, progress=False, on_epoch=on_epoch)
        except _Stop:
            trial.set_user_attr("stopped", "time budget")
            shutil.rmtree(directory, ignore_errors=True)
            raise optuna.TrialPruned("the time budget ran out") from None
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        trial.set_user_attr("best_epoch", result.metrics["best_epoch"])
        # the model's dev score as saved: at the entity bias its training chose, if it chose one
        return dev_score(result.model, result.metrics["dev"]) if "entity_bias" in result.metrics \
            else max(h["dev"] for h in result.metrics["history"])

    return objective


def _study(output: Path, seed: int, warmup: int, worker: int = 0):
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental
    # a trial whose process died stops beating; the next worker marks it failed and runs it again
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{output / STUDY}", heartbeat_interval=30, grace_period=120,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
        engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.create_study(study_name="tagger", storage=storage, load_if_exists=True, direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=seed + worker),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup))


def _counted(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def _work(config_json: str, space_json: str, train_data, dev_data, output: str, settings_json: str,
          deadline: float | None, worker: int, threads: int, quota: int, callback: Callable | None = None) -> None:
    """At most ``quota`` trials, fewer if the study has enough: in a worker process, or in the
    caller (one job), then with ``callback(study, trial)`` after each."""
    import optuna
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        settings = TuneSettings.model_validate_json(settings_json)
        config = TaggerConfig.model_validate_json(config_json)
        space = {k: Param.model_validate(v) for k, v in json.loads(space_json).items()}
        study = _study(Path(output), settings.seed, settings.warmup_epochs, worker)
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        remaining = min(quota, max(0, settings.trials - _counted(study)))
        if not remaining:
            return
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        def out_of_time(study_, trial_) -> None:  # optimize's own timeout counts from its start, not the budget's
            if deadline is not None and time.time() >= deadline:
                study_.stop()

        callbacks = [optuna.study.MaxTrialsCallback(settings.trials, states=states), out_of_time] + \
            ([callback] if callback else [])
        study.optimize(_objective(config, space, train_data, dev_data, Path(output), deadline, settings.warmup_epochs),
                       n_trials=remaining, timeout=timeout, catch=(RuntimeError, ValueError), callbacks=callbacks)
    finally:
        torch.set_num_threads(previous)


def tune(config: TaggerConfig, train_data: Sequence[Example], dev_data: Sequence[Example], output: str | Path,
         settings: TuneSettings = TuneSettings(), space: dict[str, Param] | None = None,
         progress: bool = True, on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Search hyperparameters; leave the best trial's model in ``output``.

    Args:
        config: the base recipe (``model.tasks`` set); each trial overrides the ``space`` keys.
        settings: trials, time budget, processes, seed.
        on_trial: called with the search summary (see :func:`summary`) whenever a trial ends.

    Returns:
        The search summary, also written to ``output/search.json``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    space = fixed_by_init(config, space or dict(DEFAULT_SPACE), progress)
    started = time.time()
    deadline = started + settings.time_budget if settings.time_budget else None
    if settings.engine == "ray":
        return _tune_on_ray(config, train_data, dev_data, output, settings, space, started, progress)
    study = _study(output, settings.seed, settings.warmup_epochs)
    study.set_user_attr("space", {k: v.model_dump(exclude_none=True) for k, v in space.items()})
    if not study.get_trials(deepcopy=False):  # a new study: trial 0 is the recipe itself
        study.enqueue_trial(starting_point(config, space))
    cores = os.cpu_count() or 1
    threads = max(1, cores // settings.jobs)
    args = (config.model_dump_json(), json.dumps({k: v.model_dump() for k, v in space.items()}), list(train_data),
            list(dev_data), str(output), settings.model_dump_json(), deadline)
    report = _Reporter(study, settings, started, deadline, progress, on_trial)
    remaining = max(0, settings.trials - _counted(study))  # shared out, so K processes never overshoot
    quotas = [remaining // settings.jobs + (k < remaining % settings.jobs) for k in range(settings.jobs)]
    if settings.jobs == 1:
        _work(*args, 0, threads, quotas[0], lambda study_, trial: report.update())
    else:
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_work, args=(*args, k, threads, quotas[k]), daemon=True)
                   for k in range(settings.jobs) if quotas[k]]
        try:
            with _sigterm_as_exit():  # `kill` of this process stops its workers too (the finally below)
                workers[0].start()
                _wait_for_queue(study, workers[0])
                for process in workers[1:]:
                    process.start()
                while any(p.is_alive() for p in workers):
                    for p in workers:
                        p.join(timeout=2.0 / len(workers))
                    report.update()
        finally:
            started_workers = [p for p in workers if p.pid is not None]
            for p in started_workers:
                if p.is_alive():
                    p.terminate()
            for p in started_workers:
                p.join(timeout=10)
        failed = [p.exitcode for p in workers if p.exitcode not in (0, None)]
        if failed:
            raise RuntimeError(f"{len(failed)} search worker(s) failed (exit codes {failed}); "
                               "run the same command again to resume the study")
    report.close()
    return finish(output, study, settings, time.time() - started)


def _wait_for_queue(study, worker, poll: float = 0.05) -> None:
    """Until ``worker`` has taken the study's enqueued trials (trial 0, the recipe): SQLite
    cannot lock the row, so two processes starting together could both take one (Optuna
    then fails the second's ``tell``), and the others start after this."""
    import optuna

    while worker.is_alive() and study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        time.sleep(poll)


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) inside the block, so cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class _Reporter:
    """Trials done, best dev so far and time left: a bar on a terminal, a line per trial otherwise."""

    def __init__(self, study, settings: TuneSettings, started: float, deadline: float | None, progress: bool,
                 on_trial: Callable[[dict[str, Any]], None] | None):
        from tqdm import tqdm

        self.study, self.settings, self.started, self.deadline = study, settings, started, deadline
        self.on_trial, self.progress, self.seen = on_trial, progress, _counted(study)
        self.reported = {t["number"] for t in summary(study)["trials"]}
        self.bar = tqdm(total=settings.trials, initial=self.seen, unit="trial", desc="search",
                        disable=not progress or not sys.stderr.isatty())

    def update(self) -> None:
        done = _counted(self.study)
        if done == self.seen:
            return
        self.seen = done
        info = summary(self.study)
        best = info["best"]["dev"] if info["best"] else float("nan")
        left = f", {max(0, self.deadline - time.time()) / 60:.0f} min left" if self.deadline else ""
        self.bar.n = min(done, self.settings.trials)
        self.bar.set_postfix_str(f"best dev {best:.4f}{left}")
        for trial in info["trials"]:  # each trial that ended since the last update, once
            if trial["number"] in self.reported:
                continue
            self.reported.add(trial["number"])
            if self.progress and self.bar.disable:
                print(f"trial {trial['number']} ({done}/{self.settings.trials} ended): {trial['state'].lower()}, dev "
                      f"{trial['dev'] or 0:.4f}; best {best:.4f}{left}", file=sys.stderr, flush=True)
        if self.on_trial:
            self.on_trial(info)

    def close(self) -> None:
        self.update()
        self.bar.close()


def summary(study) -> dict[str, Any]:
    """Every trial (number, state, settings, dev per epoch, best dev) and the best trial."""
    from optuna.trial import TrialState

    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING or t.state == TrialState.WAITING:
            continue
        curve = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        trials.append({"number": t.number, "state": t.state.name, "params": t.params,
                       "dev": t.value if t.value is not None else (max(curve) if curve else None),
                       "epochs": len(curve), "curve": curve,
                       "seconds": round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
                       if t.datetime_complete and t.datetime_start else None,
                       **({"note": t.user_attrs["stopped"]} if "stopped" in t.user_attrs else {})})
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(complete, key=lambda t: t["dev"]) if complete else None
    return {"trials": trials, "best": best, "space": study.user_attrs.get("space", {})}


def finish(output: Path, study, settings: TuneSettings, seconds: float) -> dict[str, Any]:
    """Make ``output`` the best trial's model, with ``search.json``, the history PNG and the card."""
    return _publish(output, summary(study), settings, seconds)


def _publish(output: Path, info: dict[str, Any], settings: TuneSettings, seconds: float) -> dict[str, Any]:
    from tagger.data.writers import atomic_write_text
    from tagger.model.artifact import METRICS
    from tagger.model.directory import is_model_directory
    from tagger.training.card import write_card
    from tagger.training.plots import search_history

    info.update(engine=settings.engine, seconds_this_run=round(seconds, 1), settings=settings.model_dump())
    best = info["best"]
    atomic_write_text(output / SEARCH, json.dumps(info, indent=1))
    search_history(info["trials"], output / HISTORY)
    if best is None:
        raise RuntimeError(f"no trial finished ({len(info['trials'])} pruned or failed); see {output / SEARCH}")
    source = output / TRIALS / str(best.get("directory", best["number"]))
    if is_model_directory(source):
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, output / item.name)
    metrics = json.loads((output / METRICS).read_text())
    metrics["search"] = {k: info[k] for k in ("engine", "best", "space", "settings")}
    metrics["search"]["trials"] = [{k: t[k] for k in ("number", "state", "dev", "epochs", "params", "seconds", "note")
                                    if k in t} for t in info["trials"]]
    atomic_write_text(output / METRICS, json.dumps(metrics, indent=2))
    write_card(output)
    return info


def _ray_domain(param: Param):
    from ray import tune as ray_tune

    if param.choices is not None:
        return ray_tune.choice(param.choices)
    if param.integer:
        low, high = int(param.low), int(param.high) + 1  # Ray's upper bound is exclusive
        return ray_tune.lograndint(low, high) if param.log else ray_tune.randint(low, high)
    return ray_tune.loguniform(param.low, param.high) if param.log else ray_tune.uniform(param.low, param.high)


def _whole_point(config: TaggerConfig, space: dict[str, Param]) -> list[dict[str, Any]] | None:
    """Ray's OptunaSearch takes a starting point only with every searched setting in it."""
    point = starting_point(config, space)
    return [point] if set(point) == set(space) else None


def _ray_trial(params: dict[str, Any], config_json: str, train_data, dev_data, output: str) -> None:
    """One Ray Tune trial: train with ``params`` and report dev after every epoch."""
    import torch
    from ray import tune as ray_tune

    from tagger.training.train import train

    torch.set_num_threads(1)
    base = TaggerConfig.model_validate_json(config_json).model_dump(mode="json")
    name = ray_tune.get_context().get_trial_id()
    directory = Path(output) / TRIALS / name
    train(load_config(None, params, base=base), train_data, dev_data, directory, progress=False,
          on_epoch=lambda record: ray_tune.report({"dev": record["dev"], "epoch": record["epoch"], "directory": name}))


def _tune_on_ray(config: TaggerConfig, train_data: Sequence[Example], dev_data: Sequence[Example], output: Path,
                 settings: TuneSettings, space: dict[str, Param], started: float, progress: bool) -> dict[str, Any]:
    """The search on Ray Tune: OptunaSearch (TPE) proposes, ASHA stops early, Ray schedules."""
    import ray
    from ray import tune as ray_tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    if not ray.is_initialized():
        ray.init(include_dashboard=False, configure_logging=False)  # RAY_ADDRESS, if set, names the cluster
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(_ray_trial, config_json=config.model_dump_json(), train_data=list(train_data),
                                 dev_data=list(dev_data), output=str(output.resolve())), {"cpu": 1})
    path = str((output / "ray").resolve())
    experiment = Path(path) / "tagger"
    if ray_tune.Tuner.can_restore(str(experiment)):  # our own experiment directory: trusted
        tuner = ray_tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        tuner = ray_tune.Tuner(
            trainable, param_space={key: _ray_domain(p) for key, p in space.items()},
            tune_config=ray_tune.TuneConfig(
                metric="dev", mode="max", num_samples=settings.trials, max_concurrent_trials=settings.jobs,
                search_alg=OptunaSearch(seed=settings.seed, points_to_evaluate=_whole_point(config, space)),
                # max_t one past the last epoch: a trial is never stopped at its last report,
                # before it has written its final model
                scheduler=ASHAScheduler(max_t=config.train.epochs + 1,
                                        grace_period=min(config.train.epochs, max(1, settings.warmup_epochs))),
                time_budget_s=settings.time_budget),
            run_config=ray_tune.RunConfig(name="tagger", storage_path=path, verbose=1 if progress else 0))
    results = tuner.fit()
    trials = []
    for number, result in enumerate(results):
        frame = result.metrics_dataframe
        curve = [float(v) for v in frame["dev"]] if frame is not None and "dev" in frame else []
        name = (result.metrics or {}).get("directory")
        directory = output / TRIALS / name if name else None
        stopped = directory is not None and (directory / "checkpoint").exists()  # ASHA ended it mid-training
        if directory is not None and (stopped or result.error is not None):
            shutil.rmtree(directory, ignore_errors=True)
        state = "FAIL" if result.error is not None or not curve else "PRUNED" if stopped else "COMPLETE"
        trials.append({"number": number, "state": state, "params": {k: result.config[k] for k in space},
                       "dev": max(curve) if curve else None, "epochs": len(curve), "curve": curve, "seconds": None,
                       "directory": name, **({"note": "stopped early by ASHA"} if stopped else {})})
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["directory"]]
    best = max(complete, key=lambda t: t["dev"]) if complete else None
    info = {"trials": trials, "best": best, "space": {k: v.model_dump(exclude_none=True) for k, v in space.items()}}
    return _publish(output, info, settings, time.time() - started)
