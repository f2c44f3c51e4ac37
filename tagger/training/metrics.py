"""Evaluation: seqeval (strict, IOB2) for span tasks, token accuracy for every task."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from seqeval.metrics import classification_report
from seqeval.scheme import IOB2


def evaluate_labels(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], kind: str) -> dict[str, Any]:
    """Score predicted label sequences against gold ones.

    Args:
        gold, predicted: IOB2 label sequences for span tasks, plain labels for tag tasks.
        kind: ``span`` or ``tag``.

    Returns:
        ``accuracy`` (token accuracy), ``sentences``, ``tokens``, ``per_label`` and, for span
        tasks, seqeval's strict micro ``precision``/``recall``/``f1`` and ``macro_*``; per
        label: precision, recall, f1 and support (entity types for span tasks, tags
        otherwise). Tag tasks also get ``confusion``: gold -> predicted -> count.
    """
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted sequences differ in length")
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    tokens = len(pairs)
    result: dict[str, Any] = {
        "accuracy": sum(g == p for g, p in pairs) / tokens if tokens else 0.0,
        "sentences": len(gold),
        "tokens": tokens,
    }
    if kind == "span":
        report = classification_report([list(g) for g in gold], [list(p) for p in predicted], mode="strict",
                                        scheme=IOB2, output_dict=True, zero_division=0)
        micro, macro = report.pop("micro avg"), report.pop("macro avg")
        report.pop("weighted avg", None)
        result.update(precision=micro["precision"], recall=micro["recall"], f1=micro["f1-score"],
                      macro_precision=macro["precision"], macro_recall=macro["recall"], macro_f1=macro["f1-score"])
        result["per_label"] = {label: _prf(r["precision"], r["recall"], r["f1-score"], r["support"])
                               for label, r in sorted(report.items())}
        return result
    gold_counts = Counter(g for g, _ in pairs)
    pred_counts = Counter(p for _, p in pairs)
    correct = Counter(g for g, p in pairs if g == p)
    per_label = {}
    for label in sorted(gold_counts | pred_counts):
        precision = correct[label] / pred_counts[label] if pred_counts[label] else 0.0
        recall = correct[label] / gold_counts[label] if gold_counts[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = _prf(precision, recall, f1, gold_counts[label])
    result["per_label"] = per_label
    confusion: dict[str, dict[str, int]] = {}
    for (g, p), n in Counter(pairs).items():
        confusion.setdefault(g, {})[p] = n
    result["confusion"] = confusion
    return result


def main_score(report: dict[str, Any], kind: str) -> float:
    """The number early stopping watches: F1 for span tasks, accuracy for tag tasks."""
    return float(report["f1"] if kind == "span" else report["accuracy"])


def _prf(precision: float, recall: float, f1: float, support: int) -> dict[str, float]:
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}
