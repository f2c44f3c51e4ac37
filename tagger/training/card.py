"""The model card: a README.md in the model directory, rendered from its config and metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tagger.data.writers import atomic_write_text
from tagger.model.artifact import CONFIG, ENSEMBLE, LABELS, METRICS, WEIGHTS

CARD = "README.md"


def render_card(directory: str | Path, name: str | None = None, data: dict[str, str] | None = None) -> str:
    """Markdown for a model directory: tasks, data, hyperparameters, dev/test scores per label.

    Args:
        name: the title (default: the directory name).
        data: optional description of the training data and its licence, e.g.
            ``{"train": "...", "licence": "CC BY-SA 4.0"}``.
    """
    directory = Path(directory)
    if (directory / ENSEMBLE).is_file():
        return _ensemble_card(directory, name, data)
    config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    metrics = json.loads((directory / METRICS).read_text(encoding="utf-8"))
    labels = json.loads((directory / LABELS).read_text(encoding="utf-8"))
    size_mb = sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) / 1e6
    model, train = config["model"], config["train"]
    lines = [f"# {name or directory.name}", "",
             "BiLSTM-CRF tagger (word embeddings + character "
             f"{model['char']['encoder'].upper()} → {model['encoder']['layers']}-layer bidirectional "
             f"{model['encoder']['cell'].upper()} → one head per task).", ""]
    lines += ["| task | kind | decoder | labels |", "|---|---|---|---|"]
    for task in model["tasks"]:
        lines.append(f"| {task['name']} | {task['kind']} | {task['decoder']} | {len(labels[task['name']])} |")
    lines += ["", "## Data", ""]
    for key, value in (data or {}).items():
        lines.append(f"- {key}: {value}")
    lines.append(f"- training: {metrics.get('train_sentences', '?')} sentences, {metrics.get('train_tokens', '?')} tokens")
    if config.get("recipe"):
        lines.append(f"- recipe: {config['recipe']}")
    if train.get("auxiliary"):
        lines.append(f"- auxiliary corpora ({metrics.get('auxiliary_sentences', '?')} of those sentences), learned "
                     "alongside on the shared encoder, their heads left out of this model: "
                     + ", ".join(f"`{path}`" for path in train["auxiliary"]))
    lines += _distill_note(config.get("distill"), metrics.get("students"), metrics.get("size_note"))
    lines += _rows_note(metrics.get("word_rows"))
    lines += _targets_note(metrics.get("targets"), metrics.get("test") or {}, metrics.get("tried"))
    lines += ["", "## Hyperparameters", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _flatten({"model": {k: v for k, v in model.items() if k != 'tasks'},
                                                       "train": train, "context": config.get("context") or {}}).items()]
    lines += ["", "## Scores", "", *_context_note(config.get("context")), *_bias_note(config.get("decode"),
                                                                                       metrics.get("entity_bias"))]
    for split in ("dev", "test"):
        for task, report in (metrics.get(split) or {}).items():
            lines += _report(split, task, report)
    lines += _search_note(metrics.get("search"))
    lines += ["", "## Training", "",
              f"- best epoch {metrics.get('best_epoch')} of {metrics.get('epochs_run')}, "
              f"{metrics.get('train_seconds', 0) / 60:.1f} min of training on this machine",
              f"- directory size {size_mb:.1f} MB ({WEIGHTS} {'fp16' if metrics.get('half') else 'fp32'})"]
    if metrics.get("speed"):
        lines.append(f"- tagging speed: {metrics['speed']}")
    return "\n".join(lines) + "\n"


def _ensemble_card(directory: Path, name: str | None, data: dict[str, str] | None) -> str:
    """The card of an ensemble: its members' settings and scores, then the ensemble's scores."""
    spec = json.loads((directory / ENSEMBLE).read_text(encoding="utf-8"))
    metrics = json.loads((directory / METRICS).read_text(encoding="utf-8"))
    members = [(m, json.loads((directory / m / CONFIG).read_text(encoding="utf-8"))) for m in spec["members"]]
    member_metrics = [_read_optional(directory / m / METRICS) for m in spec["members"]]
    labels = json.loads((directory / spec["members"][0] / LABELS).read_text(encoding="utf-8"))
    size_mb = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6
    first = members[0][1]
    lines = [f"# {name or directory.name}", "",
             f"Ensemble of {len(members)} BiLSTM-CRF taggers: each member embeds and encodes the sentence on "
             "its own, their emission scores are averaged, and one CRF with the members' average transition "
             "scores decodes the average (`tagger ensemble`, `tagger/model/ensemble.py`).", ""]
    lines += ["| task | kind | decoder | labels |", "|---|---|---|---|"]
    for task in first["model"]["tasks"]:
        lines.append(f"| {task['name']} | {task['kind']} | {task['decoder']} | {len(labels[task['name']])} |")
    lines += ["", "## Data", ""]
    for key, value in (data or {}).items():
        lines.append(f"- {key}: {value}")
    lines += ["", "## Members", "", "Each member alone, then the ensemble under Scores.", "",
              "| member | differs from member 1 | seed | dev | test | best epoch | training min |",
              "|---|---|---:|---:|---:|---:|---:|"]
    base = _flatten({k: v for k, v in first.items() if k != "data"})
    for (member, config), extra in zip(members, member_metrics):
        flat = _flatten({k: v for k, v in config.items() if k != "data"})
        differs = ", ".join(f"{k}={v}" for k, v in flat.items() if base.get(k) != v and k != "train.seed"
                            and not k.startswith("model.tasks")) or "-"
        dev, test = (", ".join(f"{t} {100 * _main(r):.2f}" for t, r in (extra.get(split) or {}).items()
                               if t in spec["tasks"]) or "-" for split in ("dev", "test"))
        lines.append(f"| {member} | {differs} | {config['train']['seed']} | {dev} | {test} | "
                     f"{extra.get('best_epoch', '-')} | {extra.get('train_seconds', 0) / 60:.1f} |")
    lines += ["", "## Hyperparameters (member 1)", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _flatten({"model": {k: v for k, v in first["model"].items() if k != 'tasks'},
                                                       "train": first["train"]}).items()]
    lines += ["", "## Scores", "", *_context_note(spec.get("context") or first.get("context"), " (the members' "
                                                  "scores above are without it)")]
    for split in ("dev", "test"):
        for task, report in (metrics.get(split) or {}).items():
            lines += _report(split, task, report)
    minutes = sum(m.get("train_seconds", 0) for m in member_metrics) / 60
    lines += ["", "## Training", "", f"- {minutes:.1f} min of training on this machine, all members together",
              f"- directory size {size_mb:.1f} MB ({WEIGHTS} {'fp16' if metrics.get('half') else 'fp32'})"]
    if metrics.get("speed"):
        lines.append(f"- tagging speed: {metrics['speed']}")
    return "\n".join(lines) + "\n"


def _distill_note(distill: dict[str, Any] | None, students: list[dict[str, Any]] | None = None,
                  size_note: str | None = None) -> list[str]:
    """How a distilled model learned (``tagger distill``, tagger/training/distill.py), and the student
    sizes it was chosen from, if there was a choice."""
    if not distill:
        return []
    lines = ["", "## Distillation", "",
             "Distilled: trained on its teachers' output distributions (CRF marginals per token and expected "
             "transition counts per sentence, each teacher with its own document context), mixed with the gold "
             f"labels: loss = {distill['weight']:g} × cross-entropy against the teacher + {1 - distill['weight']:g} "
             f"× gold negative log-likelihood where a sentence has gold labels, the teacher's alone where it has "
             f"none; temperature {distill['temperature']:g} (`tagger distill`, `tagger/training/distill.py`).", ""]
    lines += [f"- {task}: from `{teacher}`" for task, teacher in distill.get("tasks", {}).items()]
    if distill.get("unlabeled"):
        lines.append(f"- unlabelled text labelled by the teachers: {', '.join(f'`{u}`' for u in distill['unlabeled'])}")
    if distill.get("augment"):
        lines.append(f"- {distill['augment']} altered cop{'y' if distill['augment'] == 1 else 'ies'} of each gold "
                     "training sentence labelled by the teachers (mentions swapped, some words replaced: "
                     "`tagger/training/augment.py`)")
    if students:
        tasks = list(students[0]["dev"])
        lines += ["", "### Student size: accuracy against speed", "",
                  "Every size trained with the same recipe and seed; the dev rule (`scripts/build_models.py`, "
                  "`choose_size`) picks the fastest that meets the targets, else the closest: the fastest within 0.1 "
                  "(POS) / 0.5 (NER) points of the best dev score on what no size meets (marked *rule*).", "",
                  "| BiLSTM units | parameters | " + " | ".join(f"dev {t}" for t in tasks) + " | "
                  + " | ".join(f"test {t}" for t in tasks) + " | tokens/s | training min | bundled |",
                  "|---:|---:|" + "---:|" * (2 * len(tasks)) + "---:|---:|---|"]
        for row in students:
            lines.append(f"| {row['hidden']} | {row['parameters']:,} | "
                         + " | ".join(f"{100 * row['dev'][t]:.2f}" for t in tasks) + " | "
                         + " | ".join(f"{100 * row['test'][t]:.2f}" for t in tasks)
                         + f" | {row['tokens_per_second']:,} | {(row.get('train_seconds') or 0) / 60:.1f} | "
                         + ", ".join(w for w, on in (("yes", row.get("chosen")), ("*rule*", row.get("by_rule"))) if on)
                         + " |")
        if size_note:
            lines += ["", size_note]
    return lines


def _rows_note(rows: list[dict[str, Any]] | None) -> list[str]:
    """The word-table sizes the bundled model was chosen from (``tagger prune``)."""
    if not rows:
        return []
    kept = next(row["rows"] for row in rows if row.get("chosen"))
    tasks = list(rows[0]["dev"])
    lines = ["", "### Word rows kept: accuracy against memory", "",
             f"The trained word table pruned to its first rows (`tagger prune`: the training words, then the "
             f"vectors' words, most frequent first); the bundled one keeps {kept:,}: the fewest whose dev scores are "
             f"within the same 0.1 (POS) / 0.5 (NER) points of the whole table's.", "",
             "| word rows | " + " | ".join(f"dev {t}" for t in tasks) + " | " + " | ".join(f"test {t}" for t in tasks)
             + " | weights MB (fp16) | bundled |", "|---:|" + "---:|" * (2 * len(tasks)) + "---:|---|"]
    for row in rows:
        lines.append(f"| {row['rows']:,} | " + " | ".join(f"{100 * row['dev'][t]:.2f}" for t in tasks) + " | "
                     + " | ".join(f"{100 * row['test'][t]:.2f}" for t in tasks)
                     + f" | {row['weights_mb']:.1f} | " + ("yes" if row.get("chosen") else "") + " |")
    return lines


def _targets_note(targets: dict[str, float] | None, test: dict[str, Any],
                  tried: list[dict[str, Any]] | None = None) -> list[str]:
    """The test scores the model was built to reach, how far the bundled one is from each, and
    the other recipes measured on the way (one change each), with dev and test per run."""
    if not targets:
        return []
    lines = ["", "### Targets", "", "| task | target (test) | this model (test) | gap |", "|---|---:|---:|---|"]
    for task, target in targets.items():
        score = _main(test[task]) if task in test else None
        gap = "-" if score is None else "met" if score >= target else f"{100 * (target - score):.2f} short"
        lines.append(f"| {task} | {100 * target:.2f} | {'-' if score is None else f'{100 * score:.2f}'} | {gap} |")
    if tried:
        tasks = list(targets)
        lines += ["", "Also tried, one change each against the recipe of the day (dev chooses, test reported; "
                  "one seed each); none kept unless the change says so:", "",
                  "| change | against | dev " + " / ".join(tasks) + " | test " + " / ".join(tasks) + " | date |",
                  "|---|---|---|---|---|"]
        for run in tried:
            cells = [" / ".join("-" if run[split].get(t) is None else f"{100 * run[split][t]:.2f}" for t in tasks)
                     for split in ("dev", "test")]
            lines.append(f"| {run['change']} | {run['against']} | {cells[0]} | {cells[1]} | {run['date']} |")
    return lines


def _search_note(search: dict[str, Any] | None) -> list[str]:
    """The hyperparameter search this model won (``tagger tune``)."""
    if not search:
        return []
    best = search["best"]
    lines = ["", "## Search", "",
             f"Best of {len(search['trials'])} trials (`tagger tune`, {search['engine']}; history in "
             f"`search-history.png`, every epoch in `search.json`): trial {best['number']}, dev {best['dev']:.4f}.", "",
             "| trial | state | dev | epochs | " + " | ".join(search["space"]) + " |",
             "|---:|---|---:|---:|" + "---:|" * len(search["space"])]
    for trial in search["trials"]:
        values = " | ".join(_short(trial["params"].get(k)) for k in search["space"])
        dev = f"{trial['dev']:.4f}" if trial["dev"] is not None else "-"
        state = trial["state"].lower() + (f" ({trial['note']})" if trial.get("note") else "")
        lines.append(f"| {trial['number']} | {state} | {dev} | {trial['epochs']} | {values} |")
    return lines


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


def _context_note(context: dict[str, Any] | None, extra: str = "") -> list[str]:
    """A line on document context (tagger/inference/context.py) when the model uses it."""
    if not context or not context.get("weight"):
        return []
    which = "a capitalized word" if context.get("capitalized_only", True) else "a word"
    return [f"Document context: the span-task scores of {which} that occurs more than once in a document move "
            f"{context['weight']:g} of the way to their mean over its occurrences there (`tagger/inference/context.py`). "
            f"The scores below use it, with the documents the corpus marks (`# newdoc`){extra}.", ""]


def _bias_note(decode: dict[str, Any] | None, choice: dict[str, Any] | None) -> list[str]:
    """A line on the entity bias (:class:`tagger.config.DecodeConfig`) when the model uses one or
    training chose it on dev."""
    bias = (decode or {}).get("entity_bias", 0)
    if not bias and not choice:
        return []
    line = (f"Entity bias: {bias:g} is added to the scores of the labels that start an entity before decoding "
            "(more mentions found, at some cost in precision); the scores below use it.")
    if choice:
        tried = ", ".join(f"{row['bias']:g}: {100 * row['dev']:.2f}" for row in choice["grid"])
        line += f" Chosen on dev among (bias: dev score) {tried}."
    return [line, ""]


def _read_optional(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _main(report: dict[str, Any]) -> float:
    return report["f1"] if "f1" in report else report["accuracy"]


def write_card(directory: str | Path, name: str | None = None, data: dict[str, str] | None = None) -> None:
    atomic_write_text(Path(directory) / CARD, render_card(directory, name, data))


def _report(split: str, task: str, report: dict[str, Any]) -> list[str]:
    head = f"### {task} on {split}: token accuracy {100 * report['accuracy']:.2f}%"
    if "f1" in report:
        head += (f", seqeval strict micro P {100 * report['precision']:.2f} R {100 * report['recall']:.2f} "
                 f"F1 {100 * report['f1']:.2f}")
    lines = ["", head + f" ({report['sentences']} sentences, {report['tokens']} tokens)", "",
             "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, row in report["per_label"].items():
        lines.append(f"| {label} | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
                     f"{100 * row['f1']:.2f} | {row['support']} |")
    return lines


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
