"""From corpus files to training examples: one task per label column, tokens shared."""

from __future__ import annotations

from pathlib import Path

from tagger.batching import Example
from tagger.config import CorpusFormat, TaggerConfig, TaskConfig
from tagger.corpus import document_ids
from tagger.readers import detect_format, load_corpus


class DatasetError(ValueError):
    """Corpora that cannot make one training set (tasks that read different tokens, ...)."""


def task_name(corpus_path: str | Path, fmt: CorpusFormat, kind: str) -> str:
    """Default task name for a corpus: upos/xpos for CoNLL-U, ner for spans, tag otherwise."""
    if (fmt.format if fmt.format != "auto" else detect_format(corpus_path)) == "conllu":
        return fmt.label_column if isinstance(fmt.label_column, str) else {5: "xpos"}.get(fmt.label_column or 4, "upos")
    return "ner" if kind == "span" else "tag"


def tasks_for(train: str | Path, data: CorpusFormat, columns: list[int | str | None], decoder: str = "crf") -> list[TaskConfig]:
    """One task per label column, its kind detected from the training labels."""
    tasks = []
    for column in columns:
        fmt = data.model_copy(update={"label_column": column}) if column is not None else data
        kind = load_corpus(train, fmt).kind
        tasks.append(TaskConfig(name=task_name(train, fmt, kind), kind=kind, column=fmt.label_column,
                                decoder=decoder))  # type: ignore[arg-type]
    if len({t.name for t in tasks}) != len(tasks):
        raise DatasetError("two label columns would make tasks of the same name; name them in a config recipe")
    return tasks


def task_examples(train: str | Path, dev: str | Path, cfg: TaggerConfig,
                  dev_format: CorpusFormat | None = None) -> tuple[list[Example], list[Example]]:
    """Examples carrying every task's labels; all tasks must read the same tokens."""
    merged = {}
    for split, path, base in (("train", train, cfg.data), ("dev", dev, dev_format or cfg.data)):
        corpora = {}
        for task in cfg.model.tasks:
            fmt = base if task.column is None else base.model_copy(update={"label_column": task.column})
            corpora[task.name] = load_corpus(path, fmt, kind=task.kind).sentences
        first = next(iter(corpora.values()))
        for name, sentences in corpora.items():
            if [s.tokens for s in sentences] != [s.tokens for s in first]:
                raise DatasetError(f"{path}: the tokens read for task {name} differ from the other tasks'")
        documents = document_ids(first) or [None] * len(first)
        merged[split] = [Example(s.tokens, {name: corpora[name][i].labels for name in corpora}, documents[i])
                         for i, s in enumerate(first)]
    return merged["train"], merged["dev"]
