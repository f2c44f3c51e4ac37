"""From corpus files to training examples: one task per label column, tokens shared."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tagger.config import CorpusFormat, TaggerConfig, TaskConfig
from tagger.data.align import align
from tagger.data.batching import Example
from tagger.data.corpus import Sentence, document_ids
from tagger.data.readers import detect_format, load_corpus


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


def corpus_examples(paths: Sequence[str | Path], tasks: Sequence[TaskConfig], data: CorpusFormat = CorpusFormat()
                    ) -> list[Example]:
    """Examples from corpora that each label some of ``tasks``, joined by sentence id and
    tokens (:func:`tagger.data.align.align`): EWT's CoNLL-U for POS with Universal NER's IOB2 file
    for entities. A CoNLL-U file supplies the tag tasks read from its upos/xpos columns, any
    other file the span tasks (and tag tasks whose column is a number); the sentences of the
    first task's files are the base, and their ``newdoc`` marks the documents."""
    corpora: dict[str, list[Sentence]] = {}
    for path in paths:
        conllu = (data.format if data.format != "auto" else detect_format(path)) == "conllu"
        supplied = []
        for task in tasks:
            if conllu and not (task.kind == "tag" and task.column in ("upos", "xpos", None)):
                continue
            if not conllu and not (task.kind == "span" or isinstance(task.column, int)):
                continue
            fmt = data.model_copy(update={"label_column": task.column})
            corpora.setdefault(task.name, []).extend(load_corpus(path, fmt, kind=task.kind).sentences)
            supplied.append(task.name)
        if not supplied:
            raise DatasetError(f"{path}: labels none of the tasks {', '.join(t.name for t in tasks)} "
                               "(CoNLL-U files supply upos/xpos tasks, column files span tasks)")
    ordered = {t.name: corpora[t.name] for t in tasks if t.name in corpora}
    return align(ordered).examples


def auxiliary_examples(sources: Sequence[str | Path | tuple[str | Path, CorpusFormat]], taken: Sequence[str] = ()
                       ) -> tuple[list[TaskConfig], list[Example]]:
    """Tasks and examples from labelled corpora of other tasks, learned alongside a corpus's
    own (``tagger train --aux``): one task per file, ``aux1``, ``aux2``, ... (the next free
    names past ``taken``), a CoNLL-U file's from its UPOS column, any other file's from its
    label column, span or tag as its labels say; a source given as ``(path, format)`` is read
    with that format (an uploaded corpus's). Files that annotate the same sentences (EWT's
    POS and Universal NER's entities) are joined by sentence id and tokens, so such a sentence
    carries both tasks once. Examples carry no document: no context across corpora."""
    tasks, corpora, number = [], {}, 0
    for source in sources:
        number += 1
        while f"aux{number}" in taken:
            number += 1
        path, fmt = source if isinstance(source, tuple) else (source, CorpusFormat())
        if (fmt.format if fmt.format != "auto" else detect_format(path)) == "conllu" and fmt.label_column is None:
            fmt = fmt.model_copy(update={"label_column": "upos"})
        corpus = load_corpus(path, fmt)  # an empty or broken file: CorpusError with its file and line
        tasks.append(TaskConfig(name=f"aux{number}", kind=corpus.kind, column=fmt.label_column, auxiliary=True))
        corpora[tasks[-1].name] = corpus.sentences
    return tasks, [Example(e.tokens, e.labels) for e in align(corpora).examples]


def with_auxiliary(config: TaggerConfig, examples: list[Example],
                   sources: Sequence[tuple[str | Path, CorpusFormat]] | None = None) -> tuple[list[Example], str | None]:
    """``config.train.auxiliary``'s corpora (:func:`auxiliary_examples`) added to a training set:
    their tasks appended to ``config.model.tasks`` (in place), their examples after ``examples``;
    with a line saying what was added (None without auxiliary corpora). ``sources``: where
    and how to read them when ``train.auxiliary`` holds names (a training job's uploaded corpora)."""
    names = config.train.auxiliary
    if not names:
        return examples, None
    tasks, extra = auxiliary_examples(sources if sources is not None else names, taken=[t.name for t in config.model.tasks])
    config.model.tasks = [*config.model.tasks, *tasks]
    described = ", ".join(f"{t.name} ({t.kind}{f', column {t.column}' if t.column else ''}) from {name}"
                          for t, name in zip(tasks, names))
    return [*examples, *extra], f"auxiliary: {described}; {len(extra):,} sentences besides this corpus's {len(examples):,}"


def unlabeled_examples(paths: Sequence[str | Path], lang: str, first_document: int = 0,
                       batch: int = 512) -> list[Example]:
    """Raw text (plain text lines or JSONL ``{"text": ...}`` records, as ``tagger tag`` reads
    them) as examples without labels, tokenized by our tokenizer; each text is a document
    (numbered from ``first_document``)."""
    from tagger.data.readers.documents import read_documents
    from tagger.data.tokenize import Tokenizer

    tokenizer, examples, document = Tokenizer(lang), [], first_document
    for path in paths:
        texts = [text for _, text, _ in read_documents(path) if text and text.strip()]
        for start in range(0, len(texts), batch):
            for sentences in tokenizer.pipe(texts[start:start + batch]):
                examples += [Example(tuple(t for t, _, _ in s), {}, document) for s in sentences if s]
                document += 1
    return examples
