"""PNG figures: the training curve and a POS confusion matrix (matplotlib, no display)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tagger.data.writers import atomic_write_bytes  # noqa: E402


def _save(figure: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def training_curve(history: Sequence[Mapping[str, float]], path: str | Path, metric_name: str) -> None:
    """Training loss and the dev metric per epoch."""
    epochs = [h["epoch"] for h in history]
    figure, loss_axis = plt.subplots(figsize=(6, 3.5))
    loss_axis.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    dev_axis = loss_axis.twinx()
    dev_axis.plot(epochs, [h["dev"] for h in history], "s-", color="tab:orange", label=f"dev {metric_name}")
    dev_axis.set_ylabel(f"dev {metric_name}", color="tab:orange")
    figure.suptitle("training curve")
    _save(figure, path)


def confusion_matrix(confusion: Mapping[str, Mapping[str, int]], path: str | Path, title: str = "confusion") -> None:
    """Row-normalised confusion matrix (gold rows, predicted columns)."""
    labels = sorted(set(confusion) | {p for row in confusion.values() for p in row})
    size = max(4.0, 0.32 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    matrix = [[confusion.get(g, {}).get(p, 0) for p in labels] for g in labels]
    normalised = [[n / max(sum(row), 1) for n in row] for row in matrix]
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    axis.set_title(title)
    _save(figure, path)


def search_history(trials: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """A hyperparameter search: each trial's best dev score (pruned trials hollow) and the best so far."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    best, running = [], float("-inf")
    for trial in trials:
        dev = trial.get("dev")
        if dev is None:
            best.append(running if running > float("-inf") else None)
            continue
        complete = trial["state"] == "COMPLETE"
        axis.plot(trial["number"], dev, "o", color="tab:blue", fillstyle="full" if complete else "none")
        running = max(running, dev) if complete else running
        best.append(running if running > float("-inf") else None)
    numbers = [t["number"] for t in trials]
    axis.step(numbers, [b if b is not None else float("nan") for b in best], where="post", color="tab:orange",
              label="best finished trial")
    axis.set_xlabel("trial")
    axis.set_ylabel("dev score")
    axis.legend(loc="lower right")
    figure.suptitle("search history (hollow: pruned)")
    _save(figure, path)
