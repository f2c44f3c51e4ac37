"""Training jobs: queued in SQLite (``<data dir>/jobs.sqlite``), run in spawned worker
processes, at most ``max_jobs`` at once. After a restart, finished jobs are still listed
and jobs that were queued or running are marked FAILED ("interrupted by a server restart";
they are not resumed). Each job keeps its directory with ``log.txt``."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from server import worker
from server.corpora import CorpusStore
from server.store import ModelStore, StoreError, check_name

COLUMNS = ("id", "state", "model_name", "request", "version", "activated", "epoch", "epochs", "step", "steps",
           "loss", "dev_score", "error", "created", "started", "finished", "eta", "dev_metrics", "trial", "trials")
ADDED = {"trial": 0, "trials": 0}  # columns newer than the first jobs.sqlite: added to an older file on open
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class JobError(ValueError):
    """A request the job manager refuses (unknown job, bad override, ...)."""


class JobManager:
    """Args:
        on_finished: awaited with (model name, version, dev score) when a job registers a
            version; returns whether it was activated.
    """

    def __init__(self, data_dir: Path, models: ModelStore, corpora: CorpusStore, max_jobs: int, threads: int,
                 on_finished: Callable[[str, str, float], Awaitable[bool]]):
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.models, self.corpora = models, corpora
        self.max_jobs, self.threads, self.on_finished = max_jobs, threads, on_finished
        self.db = sqlite3.connect(Path(data_dir) / "jobs.sqlite", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(COLUMNS)})")
        present = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        for column, default in ADDED.items():
            if column not in present:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} DEFAULT {default!r}")
        self._lock = threading.Lock()
        self._changed = asyncio.Condition()
        self._processes: dict[str, multiprocessing.Process] = {}
        self._monitors: set[asyncio.Task] = set()
        self._scheduler: asyncio.Task | None = None
        self._wake = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self.db.execute("UPDATE jobs SET state='FAILED', error='interrupted by a server restart', finished=? "
                            "WHERE state IN ('QUEUED', 'RUNNING')", (time.time(),))
        self._scheduler = asyncio.create_task(self._schedule())

    async def close(self) -> None:
        if self._scheduler:
            self._scheduler.cancel()
        for monitor in self._monitors:
            monitor.cancel()
        for job_id, process in list(self._processes.items()):
            process.terminate()
            self._update(job_id, state="FAILED", error="server shut down", finished=time.time())
        self.db.close()

    # --- requests -------------------------------------------------------------------------

    def submit(self, train: str, dev: str, model_name: str, overrides: dict[str, str], base: str = "",
               teachers: Sequence[str] = (), search_trials: int = 0, search_seconds: float = 0.0) -> dict[str, Any]:
        """Queue a job; ``base`` is ``name`` (its active version) or ``name:version`` to start
        from; ``teachers`` (the same form) make it a distillation, ``search_trials`` a
        hyperparameter search (``search_seconds``: its time budget, 0 for none). The override
        ``train.init_from`` names a served model the same way."""
        from tagger.config import ConfigError, load_config, parse_assignment
        from tagger.data.vectors import NAMES, VectorsError, require

        check_name(model_name)
        self.models.check_room(model_name)
        self.corpora.path(train), self.corpora.path(dev)
        try:
            parsed = dict(parse_assignment(f"{k}={v}") for k, v in overrides.items())
            tables = [key for key, value in parsed.items() if isinstance(value, dict)]
            if tables:  # a whole table would get past the checks of the settings below
                raise JobError(f"{tables[0]}: an override sets one setting (section.key -> value), not a table")
            if parsed.get("train.init_from"):  # a served model (name or name:version), never a path on this machine
                parsed["train.init_from"] = self._model_path(str(parsed["train.init_from"]))
            auxiliary = parsed.get("train.auxiliary")
            if auxiliary:  # uploaded corpora by name, never paths on this machine
                if not isinstance(auxiliary, list) or not all(isinstance(name, str) for name in auxiliary):
                    raise JobError('train.auxiliary: a list of uploaded corpus names, e.g. ["ewt-pos", "uner"]')
                for name in auxiliary:
                    self.corpora.path(name)  # uploaded? (the worker reads them with their formats)
            if parsed.get("model.vectors") and parsed["model.vectors"] not in NAMES:
                raise JobError(f"model.vectors: a training job takes {', '.join(NAMES)}; files on the server "
                               "are not read")
            if parsed.get("model.vectors"):
                require(str(parsed["model.vectors"]))  # installed on this server?
            config = load_config(None, parsed)
        except (ConfigError, VectorsError) as error:
            raise JobError(str(error)) from None
        if sum(map(bool, (base, teachers, search_trials))) > 1:
            raise JobError("a job is one of: training from a base model, distilling from teachers, a search")
        if config.train.auxiliary and (base or teachers):
            raise JobError("train.auxiliary trains a new model from its own labels: not from a base model or teachers")
        if search_seconds < 0:
            raise JobError("search_time_budget_seconds must not be negative")
        base_path = self._model_path(base) if base else None
        job_id = uuid.uuid4().hex[:12]
        request = {"train": train, "dev": dev, "config": config.model_dump_json(), "overrides": parsed, "base": base_path,
                   "teachers": [self._model_path(t) for t in teachers],
                   "search": {"trials": search_trials, "seconds": search_seconds} if search_trials else None}
        row = {"id": job_id, "state": "QUEUED", "model_name": model_name, "request": json.dumps(request),
               "version": "", "activated": 0, "epoch": 0, "epochs": config.train.epochs, "step": 0, "steps": 0,
               "loss": 0.0, "dev_score": 0.0, "error": "", "created": time.time(), "started": 0.0,
               "finished": 0.0, "eta": 0.0, "dev_metrics": "{}", "trial": 0, "trials": search_trials}
        with self._lock:
            self.db.execute(f"INSERT INTO jobs VALUES ({', '.join('?' * len(COLUMNS))})", [row[c] for c in COLUMNS])
        self._wake.set()
        return row

    def _model_path(self, reference: str) -> str:
        """``name`` (its active version) or ``name:version`` -> the stored model's directory."""
        name, _, version = reference.partition(":")
        version = version or self.models.active(check_name(name)) or ""
        if not version:
            raise StoreError(f"model {name} has no version to use (no such model, or none active)")
        return str(self.models.path(name, version))

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            found = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id=?", (job_id,)).fetchone()
        if found is None:
            raise JobError(f"no job {job_id!r}")
        return dict(zip(COLUMNS, found))

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY created DESC").fetchall()
        return [dict(zip(COLUMNS, r)) for r in rows]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job["state"] == "QUEUED":
            await self._set(job_id, state="CANCELLED", error="cancelled before it started", finished=time.time())
        elif job["state"] == "RUNNING":
            process = self._processes.get(job_id)
            if process is not None:
                self._update(job_id, error="cancelled")  # the monitor sees the exit and finishes the record
                process.terminate()
        return self.get(job_id)

    async def watch(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """The job now, then at every change, until it is final."""
        last = None
        while True:
            job = self.get(job_id)
            if job != last:
                yield job
                last = job
            if job["state"] in FINAL:
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass

    # --- running ----------------------------------------------------------------------------

    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            self.db.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?",
                            [*fields.values(), job_id])

    async def _set(self, job_id: str, **fields: Any) -> None:
        self._update(job_id, **fields)
        async with self._changed:
            self._changed.notify_all()

    async def _schedule(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                queued = [r[0] for r in self.db.execute("SELECT id FROM jobs WHERE state='QUEUED' ORDER BY created")]
            for job_id in queued[: max(0, self.max_jobs - len(self._processes))]:
                await self._launch(job_id)

    async def _launch(self, job_id: str) -> None:
        job = self.get(job_id)
        request = json.loads(job["request"])
        directory = self.root / job_id
        directory.mkdir(parents=True, exist_ok=True)
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        process = context.Process(target=worker.run, daemon=True, args=(
            str(directory), request["config"], str(self.corpora.path(request["train"])),
            self.corpora.meta(request["train"])["format"], str(self.corpora.path(request["dev"])),
            self.corpora.meta(request["dev"])["format"], self.threads, events, request.get("base"),
            request.get("teachers") or [], request.get("search"), request.get("overrides"),
            [(str(self.corpora.path(name)), self.corpora.meta(name)["format"])
             for name in json.loads(request["config"])["train"].get("auxiliary", [])]))
        process.start()
        self._processes[job_id] = process
        await self._set(job_id, state="RUNNING", started=time.time())
        monitor = asyncio.create_task(self._monitor(job_id, process, events))
        self._monitors.add(monitor)
        monitor.add_done_callback(self._monitors.discard)

    async def _monitor(self, job_id: str, process, events) -> None:
        loop = asyncio.get_running_loop()
        outcome: tuple[str, Any] | None = None
        started = time.time()
        while True:
            try:
                kind, payload = await loop.run_in_executor(None, events.get, True, 0.5)
            except queue.Empty:
                if not process.is_alive():
                    break
                continue
            if kind == "step":
                epochs = self.get(job_id)["epochs"]
                done = (payload["epoch"] - 1) + payload["step"] / payload["steps"]
                eta = (time.time() - started) / done * (epochs - done) if done else 0.0
                await self._set(job_id, epoch=payload["epoch"], step=payload["step"], steps=payload["steps"],
                                loss=payload["loss"], eta=eta)
            elif kind == "epoch":
                best = max(self.get(job_id)["dev_score"], payload["dev"])
                await self._set(job_id, epoch=payload["epoch"], loss=payload["loss"], dev_score=best)
            elif kind == "plan":  # the worker settled the epochs (a built-in recipe's)
                await self._set(job_id, epochs=payload["epochs"])
            elif kind == "trial":  # a search: trials ended, the best dev so far, time left
                done = payload["trial"]
                eta = (time.time() - started) / done * (payload["trials"] - done) if done else 0.0
                await self._set(job_id, trial=done, trials=payload["trials"], dev_score=payload["best"] or 0.0,
                                eta=min(eta, payload["seconds_left"]) if payload.get("seconds_left") else eta)
            else:
                outcome = (kind, payload)
                break
        await loop.run_in_executor(None, process.join, 30)
        self._processes.pop(job_id, None)
        job = self.get(job_id)
        if outcome is not None and outcome[0] == "done":
            await self._register(job_id, outcome[1]["dev"])
        elif job["error"] == "cancelled":
            await self._set(job_id, state="CANCELLED", finished=time.time(), eta=0.0)
        else:
            reason = outcome[1] if outcome else _exit_reason(process.exitcode)
            await self._set(job_id, state="FAILED", error=reason, finished=time.time(), eta=0.0)
        self._wake.set()

    async def _register(self, job_id: str, dev: dict[str, dict[str, Any]]) -> None:
        job = self.get(job_id)
        scores = [float(r["f1"] if "f1" in r else r["accuracy"]) for r in dev.values()]
        dev_score = sum(scores) / len(scores) if scores else 0.0
        flat = {}
        for task, report in dev.items():
            flat.update({f"{task}.{k}": float(v) for k, v in report.items() if k in ("accuracy", "precision", "recall", "f1")})
            flat.update({f"{task}.{label}.{k}": float(row[k]) for label, row in report.get("per_label", {}).items()
                         for k in ("precision", "recall", "f1")})
        try:
            version = await asyncio.to_thread(self.models.add, job["model_name"], self.root / job_id / "model")
        except (StoreError, OSError) as error:  # e.g. the version limit reached by a job that finished first
            await self._set(job_id, state="FAILED", error=f"trained, but not stored: {error}", finished=time.time(), eta=0.0)
            return
        activated = await self.on_finished(job["model_name"], version, dev_score)
        await self._set(job_id, state="SUCCEEDED", version=version, activated=int(activated), dev_score=dev_score,
                        dev_metrics=json.dumps(flat), finished=time.time(), eta=0.0)



def _exit_reason(exitcode: int | None) -> str:
    """Why a worker that reported no outcome ended: a signal (the OOM killer's SIGKILL, say) or its exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker killed by signal {-exitcode}"
    return f"worker exited with code {exitcode}"
