"""Training policy: vocabularies, optimiser, schedule, early stopping, checkpoints, resume.

The output directory always holds the best model so far (a loadable model directory), a
``checkpoint/`` to resume from while training runs, and at the end ``metrics.json`` and
``training-curve.png``. Checkpoints are safetensors plus JSON: nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm import tqdm

from tagger.config import TaggerConfig
from tagger.data.batching import Example, bucketed
from tagger.data.schemes import entity_types, labels_for
from tagger.data.vectors import load_vectors
from tagger.data.vocab import Vocab
from tagger.data.writers import atomic_write_bytes, atomic_write_text
from tagger.inference.predict import predict
from tagger.model.artifact import CONFIG, METRICS, Model, build_model, save_model, without_auxiliary
from tagger.model.directory import load_model
from tagger.training import distributed
from tagger.training.card import write_card
from tagger.training.metrics import evaluate_labels, main_score
from tagger.training.plots import confusion_matrix, training_curve

CHECKPOINT = "checkpoint"
STEP_EVERY = 20  # batches between on_step calls
CURVE = "training-curve.png"


@dataclass
class TrainResult:
    model: Model
    metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_vocabularies(config: TaggerConfig, train: Sequence[Example], extra_words: Sequence[str] = ()
                       ) -> tuple[Vocab, Vocab, dict[str, Vocab], np.ndarray | None, np.ndarray | None]:
    """Word, character and label vocabularies from the training data, plus the pretrained
    rows for the word vocabulary and which rows came from the vectors (both None without vectors).

    The word vocabulary is the training words, then ``extra_words`` (an init model's
    vocabulary), then with vectors the ``max_vectors`` most frequent pretrained words, so
    the model stays small yet knows common unseen words.
    """
    mc = config.model
    key = (lambda t: t.lower()) if mc.lowercase else (lambda t: t)
    counts = Counter(key(t) for e in train for t in e.tokens)
    char_counts = Counter(c for e in train for t in e.tokens for c in t)
    labels: dict[str, Vocab] = {}
    for task in mc.tasks:
        seen = [label for e in train if task.name in e.labels for label in e.labels[task.name]]
        if task.kind == "span":
            labels[task.name] = Vocab(labels_for(entity_types(seen), task.encoding), specials=False)
        else:
            labels[task.name] = Vocab(sorted(set(seen)), specials=False)
    if not mc.vectors:
        return Vocab.build(counts, mc.min_count, extra_words), Vocab.build(char_counts), labels, None, None
    vector_words, matrix = load_vectors(mc.vectors)
    row_of = {w: i for i, w in enumerate(vector_words)}
    words = Vocab.build(counts, mc.min_count, [*extra_words, *vector_words[: mc.max_vectors]])
    rng = np.random.default_rng(config.train.seed)
    table = rng.normal(0, float(matrix.std()), size=(len(words), matrix.shape[1])).astype(np.float32)
    table[0] = 0
    pretrained = np.zeros(len(words), dtype=bool)
    for i, word in enumerate(words.items):
        row = row_of.get(word)
        if row is not None:
            table[i] = matrix[row]
            pretrained[i] = True
    return words, Vocab.build(char_counts), labels, table, pretrained


ARCHITECTURE = {"word_dim", "lowercase", "casing_dim", "char", "encoder"}


def with_architecture(config: TaggerConfig, init: Model) -> TaggerConfig:
    """``config`` with ``init``'s architecture (embeddings, characters, encoder), so that its
    weights fit; the tasks, dropouts, training settings and vectors stay ``config``'s. Vectors
    give rows to the words the init model lacks (this corpus's, and the ``max_vectors`` most
    frequent); the init model's own rows (its vectors, trained) replace theirs."""
    if len(init.members) > 1:
        raise ValueError("cannot start from an ensemble; start from one of its members (a member-N subdirectory)")
    model = {**config.model.model_dump(), **init.config.model.model_dump(include=ARCHITECTURE)}
    return config.model_copy(update={"model": type(config.model).model_validate(model)})


def transfer(source: Model, target: Model) -> dict[str, int]:
    """Copy into ``target`` what ``source`` learned where both have it: the rows of the words and
    characters both vocabularies hold, every other tensor of the same name and shape (character
    encoder, sentence encoder), and the head and decoder of each task whose label list is the
    same in both. Returns how many word rows, character rows and tensors were copied."""
    src, dst = source.network.state_dict(), target.network.state_dict()
    sf, tf = source.featurizer, target.featurizer
    same_labels = {t for t in tf.labels if t in sf.labels and sf.labels[t].items == tf.labels[t].items}
    counts = {"words": 0, "chars": 0, "tensors": 0}
    rows_of = {"word_embed.weight": ("words", sf.words, tf.words), "chars.embed.weight": ("chars", sf.chars, tf.chars)}
    for name, (key, old, new) in rows_of.items():
        pairs = [(i, old.index[item]) for i, item in enumerate(new.items) if item in old.index]
        if pairs and src[name].shape[1] == dst[name].shape[1]:
            rows, source_rows = map(list, zip(*pairs))
            dst[name][rows] = src[name][source_rows].to(dst[name].dtype)
            counts[key] = len(pairs)
    for name, tensor in dst.items():
        if name in rows_of or name not in src or src[name].shape != tensor.shape:
            continue
        room, _, rest = name.partition(".")
        if room in ("heads", "decoders") and rest.split(".")[0] not in same_labels:
            continue
        tensor.copy_(src[name].to(tensor.dtype))
        counts["tensors"] += 1
    target.network.load_state_dict(dst)
    return counts


def evaluate_model(model: Model, data: Sequence[Example]) -> dict[str, dict[str, Any]]:
    """Per-task reports on labelled examples (each task on the examples that carry it),
    with the examples' documents for a model with document context."""
    documents = [e.document if e.document is not None else -1 - i for i, e in enumerate(data)]  # unknown: alone
    predictions = predict(model, [e.tokens for e in data], scores=False, documents=documents)
    reports = {}
    for task in model.config.model.tasks:
        rows = [(e.labels[task.name], p[task.name].labels) for e, p in zip(data, predictions) if task.name in e.labels]
        if rows:
            reports[task.name] = evaluate_labels([g for g, _ in rows], [p for _, p in rows], task.kind)
    return reports


def dev_score(model: Model, reports: Mapping[str, Mapping[str, Any]]) -> float:
    """Mean over tasks of the task's main score (F1 for span tasks, accuracy for tag tasks)."""
    kinds = {t.name: t.kind for t in model.config.model.tasks}
    return sum(main_score(r, kinds[t]) for t, r in reports.items()) / max(len(reports), 1)


class Teacher(Protocol):
    """What a student trains from besides gold labels (:class:`tagger.training.distill.TeacherCache`)."""

    def labels(self) -> dict[str, Vocab]: ...

    def batch(self, indices: Sequence[int], width: int) -> dict[str, Any]: ...

    def loss(self, network: torch.nn.Module, emissions: Mapping[str, torch.Tensor], mask: torch.Tensor,
             tags: Mapping[str, torch.Tensor], has_tags: Mapping[str, torch.Tensor], soft: Any) -> torch.Tensor: ...


class _Objective(torch.nn.Module):
    """The network's training loss as one module call, so DistributedDataParallel sees the
    CRF's parameters used in the same forward as the encoder's. With a teacher, the loss
    is the teacher's (distillation); ``soft`` is its batch."""

    def __init__(self, network: torch.nn.Module, teacher: Teacher | None = None):
        super().__init__()
        self.network, self.teacher = network, teacher

    def forward(self, words, chars, char_index, mask, casing, tags, has_tags, soft=None):
        emissions = self.network(words, chars, char_index, mask, casing)
        if self.teacher is None:
            return self.network.loss(emissions, tags, has_tags, mask)
        return self.teacher.loss(self.network, emissions, mask, tags, has_tags, soft)


def train(config: TaggerConfig, train_data: Sequence[Example], dev_data: Sequence[Example], output: str | Path,
          resume: bool = False, progress: bool = True, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          on_step: Callable[[dict[str, Any]], None] | None = None, base: Model | None = None) -> TrainResult:
    """Train, keeping the best model (by dev score) in ``output``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this is data-parallel: see :mod:`tagger.training.distributed`.
    Every rank returns the same best model.

    Args:
        config: the full config; ``config.model.tasks`` names the heads.
        train_data, dev_data: examples with labels per task (IOB2 for span tasks).
        output: the model directory to write.
        resume: continue from ``output/checkpoint`` if it exists.
        progress: show a progress bar.
        on_epoch: called with each epoch's record (epoch, loss, dev, lr, seconds).
        on_step: called every few batches with epoch, step, steps and the mean loss so far.
        base: a trained model to start from: its architecture, vocabularies, labels and
            weights are kept (``config.model`` is ignored); every training label must be one
            it knows.
    """
    context = distributed.setup()
    try:
        return _train(config, train_data, dev_data, Path(output), resume, progress, on_epoch, on_step, base, context)
    finally:
        distributed.teardown(context)


def _train(config: TaggerConfig, train_data: Sequence[Example], dev_data: Sequence[Example], output: Path,
           resume: bool, progress: bool, on_epoch: Callable[[dict[str, Any]], None] | None,
           on_step: Callable[[dict[str, Any]], None] | None, base: Model | None,
           context: distributed.Context, teacher: Teacher | None = None) -> TrainResult:
    """:func:`train`'s loop; with ``teacher``, a distillation (:func:`tagger.training.distill.distill`):
    the label lists are the teacher's and each batch's loss comes from it."""
    tc = config.train
    main = context.is_main
    progress = progress and main
    on_epoch, on_step = (on_epoch, on_step) if main else (None, None)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed)
    auxiliary = {t.name for t in config.model.tasks if t.auxiliary}
    if tc.max_sentences:  # of the corpus's own sentences: the auxiliary corpora's are all kept
        own = [e for e in train_data if not _auxiliary_only(e, auxiliary)]
        train_data = own[: tc.max_sentences] + [e for e in train_data if _auxiliary_only(e, auxiliary)]
    init = load_model(tc.init_from) if tc.init_from else None
    if init is not None and base is not None:
        raise ValueError("give a base model or train.init_from, not both: a base keeps its labels, "
                         "init_from starts this corpus's labels on its encoder")
    if init is not None:
        config = with_architecture(config, init)
    if auxiliary and len(auxiliary) == len(config.model.tasks):
        raise ValueError("every task is auxiliary: a model needs a task of its own besides train.auxiliary's")
    if auxiliary and (base is not None or teacher is not None):
        raise ValueError("auxiliary corpora (train.auxiliary) train a new model from its own labels: "
                         "not with a base model or teachers")
    if base is not None and len(base.members) > 1:
        raise ValueError("cannot train from an ensemble; start from one of its members (a member-N subdirectory)")
    if base is not None:
        config = config.model_copy(update={"model": base.config.model.model_copy(deep=True)})
        _check_labels(base, train_data)
        words, chars, labels = base.featurizer.words, base.featurizer.chars, base.featurizer.labels
        table = pretrained = None
    else:
        extra = init.featurizer.words.items[2:] if init is not None else ()  # past <pad>, <unk>
        words, chars, labels, table, pretrained = build_vocabularies(config, train_data, extra)
        if table is not None and init is not None and table.shape[1] != config.model.word_dim:
            if main:  # e.g. a recipe's GloVe 50d on a model trained without them: as before vectors met init_from
                print(f"vectors {config.model.vectors} not used: {table.shape[1]} dimensions, the words of "
                      f"{tc.init_from} {config.model.word_dim}", file=sys.stderr)
            config = config.model_copy(update={"model": config.model.model_copy(update={"vectors": None})})
            words, chars, labels, table, pretrained = build_vocabularies(config, train_data, extra)
        if teacher is not None:
            labels = teacher.labels()
    if table is not None:
        config = config.model_copy(deep=True)
        config.model.word_dim = table.shape[1]
    model = build_model(config, words, chars, labels)
    network = model.network
    if base is not None:
        network.load_state_dict(base.network.state_dict())
    if table is not None:
        network.word_embed.weight.data.copy_(torch.from_numpy(table))
        if config.model.freeze_vectors:  # pretrained rows get no gradient; the others learn
            trainable = torch.from_numpy(~pretrained).unsqueeze(1).float()  # (V, 1)
            network.word_embed.weight.register_hook(lambda grad: grad * trainable)
    if init is not None:
        copied = transfer(init, model)
        if main:
            print(f"init from {tc.init_from}: {copied['words']:,} word rows, {copied['chars']:,} character rows "
                  f"and {copied['tensors']} tensors copied", file=sys.stderr)
    objective: torch.nn.Module = _Objective(network, teacher)
    if context.enabled:  # the same initial weights everywhere (DDP broadcasts rank 0's); own dropout per rank
        objective = torch.nn.parallel.DistributedDataParallel(objective, find_unused_parameters=len(config.model.tasks) > 1)
        torch.manual_seed(tc.seed + context.rank)
    rows = _WordRowsInUse.of(model, train_data) if not tc.weight_decay else None
    # the steps look words up in those rows too, except under DDP (it holds the whole table's
    # parameter) and with frozen vectors (their gradient hook is on the whole table)
    lookup_rows = rows is not None and not context.enabled and not config.model.freeze_vectors
    optimizer = _optimizer(config, network, rows)
    steps_per_epoch = math.ceil(len(train_data) / tc.batch_size / context.world_size)
    scheduler = _scheduler(config, optimizer, steps_per_epoch)
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": [], "seconds": 0.0}
    checkpoint = output / CHECKPOINT
    if main:
        _recover_checkpoint(checkpoint)
    distributed.barrier(context)
    if resume and (checkpoint / "state.json").exists():
        state = _load_checkpoint(checkpoint, network, optimizer, scheduler)
    lengths = [len(e.tokens) for e in train_data]
    for epoch in range(state["epoch"] + 1, tc.epochs + 1):
        if epoch - state["best_epoch"] > tc.patience and state["best_epoch"]:
            break
        started = time.perf_counter()
        network.train()
        batches = distributed.shard(list(bucketed(lengths, tc.batch_size, random.Random(tc.seed * 1000 + epoch))), context)
        # the bar on a terminal only: a log file (a job log, CI, nohup) gets the line per epoch below
        bar = tqdm(batches, desc=f"epoch {epoch}/{tc.epochs}", disable=not progress or not sys.stderr.isatty(),
                   unit="batch", leave=False)
        total, seen = 0.0, 0
        with rows.looked_up() if lookup_rows else contextlib.nullcontext():  # type: ignore[union-attr]
            for step, indices in enumerate(bar, start=1):
                batch = model.featurizer.batch([train_data[i] for i in indices])
                if config.model.word_dropout:
                    drop = (torch.rand(batch.words.shape) < config.model.word_dropout) & batch.mask
                    batch.words = batch.words.masked_fill(drop, 1)  # 1 = unknown word
                soft = teacher.batch(indices, batch.mask.size(1)) if teacher is not None else None
                loss = objective(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing,
                                 batch.tags, batch.has_tags, soft)
                network.zero_grad(set_to_none=True)  # every parameter's (the word table's: see _WordRowsInUse)
                loss.backward()
                if rows is not None:
                    rows.take_gradient()
                torch.nn.utils.clip_grad_norm_(network.parameters(), tc.clip)
                optimizer.step()
                if config.train.schedule == "linear":
                    scheduler.step()
                total, seen = total + float(loss.detach()) * len(indices), seen + len(indices)
                bar.set_postfix(loss=f"{total / seen:.3f}", dev=f"{state['best']:.4f}")
                if on_step and (step % STEP_EVERY == 0 or step == len(batches)):
                    on_step({"epoch": epoch, "step": step, "steps": len(batches), "loss": total / seen})
        bar.close()
        reports = evaluate_model(model, dev_data) if main else {}
        score = distributed.broadcast(dev_score(model, reports) if main else 0.0, context)
        if config.train.schedule == "plateau":
            scheduler.step(score)
        seconds = time.perf_counter() - started
        state["seconds"] += seconds
        record = {"epoch": epoch, "loss": distributed.mean(total / max(seen, 1), context), "dev": score,
                  "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2)}
        state["history"].append(record)
        if score > state["best"]:
            state["best"], state["best_epoch"] = score, epoch
            if main:
                save_model(without_auxiliary(model), output, metrics={"dev": reports, "epoch": epoch, "partial": True})
        state["epoch"] = epoch
        if main:
            _save_checkpoint(checkpoint, network, optimizer, scheduler, state)
        distributed.barrier(context)  # every rank resumes from the same checkpoint
        if progress:
            tqdm.write(f"epoch {epoch}: loss {record['loss']:.4f}  dev {score:.4f}  "
                       f"best {state['best']:.4f} (epoch {state['best_epoch']})  {seconds:.0f}s")
        if on_epoch:
            on_epoch(record)
    if not main:
        distributed.barrier(context)  # rank 0 writes the metrics and the card
        return TrainResult(load_model(output), json.loads((output / METRICS).read_text()))
    best = load_model(output)  # the best epoch's weights, exactly as saved
    bias, dev_reports = choose_entity_bias(best, dev_data, config.train.entity_bias_grid, output)
    dev_reports = dev_reports or evaluate_model(best, dev_data)
    metrics = {
        "dev": dev_reports,
        **({"entity_bias": bias} if bias else {}),
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "train_sentences": len(train_data),
        **({"auxiliary_sentences": sum(1 for e in train_data if _auxiliary_only(e, auxiliary))}
           if auxiliary else {}),
        "train_tokens": sum(lengths),
        "processes": context.world_size,
        "train_seconds": round(state["seconds"], 1),
        "history": state["history"],
    }
    atomic_write_text(output / METRICS, json.dumps(metrics, indent=2))
    kinds = {t.name: t.kind for t in config.model.tasks if not t.auxiliary}
    training_curve(state["history"], output / CURVE,
                   "F1" if set(kinds.values()) == {"span"} else "accuracy" if set(kinds.values()) == {"tag"} else "score")
    for task, report in dev_reports.items():
        if kinds[task] == "tag":
            confusion_matrix(report["confusion"], output / f"confusion-{task}.png", f"{task} on dev")
    write_card(output)
    shutil.rmtree(checkpoint, ignore_errors=True)
    distributed.barrier(context)
    return TrainResult(best, metrics)


def _auxiliary_only(example: Example, auxiliary: set[str]) -> bool:
    """Whether the example comes from an auxiliary corpus (labels of auxiliary tasks only)."""
    return bool(example.labels) and auxiliary.issuperset(example.labels)


def choose_entity_bias(model: Model, dev_data: Sequence[Example], grid: Sequence[float], directory: Path | None = None
                       ) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]] | None]:
    """Set ``model``'s ``decode.entity_bias`` to the value of ``grid`` (and 0) with the best dev
    score, the smallest on a tie, and write it into ``directory``'s config.json if given.
    Nothing changes without a grid or a span task, or when the config sets a bias already
    (``--set decode.entity_bias=B``: that one is kept, and the epochs were scored with it).
    Returns the choice with every value's dev score (for the metrics and the card) and the
    dev reports at the chosen value; (None, None) when nothing was chosen."""
    if not grid or model.config.decode.entity_bias or not any(t.kind == "span" for t in model.config.model.tasks):
        return None, None
    scores, reports = [], {}
    for bias in sorted({0.0, *grid}):
        model.config = model.config.with_entity_bias(bias)
        reports[bias] = evaluate_model(model, dev_data)
        scores.append({"bias": bias, "dev": dev_score(model, reports[bias])})
    chosen = max(scores, key=lambda row: row["dev"])["bias"]  # the first (smallest) of equal scores
    model.config = model.config.with_entity_bias(chosen)
    if directory is not None:
        atomic_write_text(directory / CONFIG, model.config.model_dump_json(indent=2))
    return {"chosen": chosen, "grid": scores}, reports[chosen]


def _check_labels(base: Model, data: Sequence[Example]) -> None:
    for task in base.config.model.tasks:
        known = set(base.featurizer.labels[task.name].items)
        seen = {label for e in data if task.name in e.labels
                for label in base.featurizer.encode_labels(task.name, e.labels[task.name])}
        if seen - known:
            raise ValueError(f"the base model's {task.name} task has no label {', '.join(sorted(seen - known))}; "
                             "train a new model instead")
    missing = {t for e in data for t in e.labels} - {t.name for t in base.config.model.tasks}
    if missing:
        raise ValueError(f"the base model has no task {', '.join(sorted(missing))}")


class _WordRowsInUse:
    """The rows of the word table that training tokens use, handed to the optimizer in place of
    the whole table, and (:meth:`looked_up`) the table the training steps look words up in.

    The rows past the last one any training token maps to (words known only from the vectors
    or from an init model) never get a gradient, so Adam or SGD without weight decay never
    moves them, yet updates every row at every step: with all 400,000 GloVe rows, that is
    20 million numbers a step for the few thousand words a corpus has. ``rows`` shares the
    table's storage, so the optimizer's in-place updates are the table's: the same training,
    bit for bit, and an optimizer state (and checkpoint) the size of the rows in use. Looked up
    through ``rows``, backward also fills a gradient of the rows in use alone, where the whole
    table's was zero-filled, summed into and norm-clipped at every step.
    """

    def __init__(self, embedding: torch.nn.Embedding, used: int):
        self.embedding = embedding
        self.table = embedding.weight
        self.rows = torch.nn.Parameter(self.table.data[:used])

    @classmethod
    def of(cls, model: Model, train_data: Sequence[Example]) -> "_WordRowsInUse | None":
        """For ``model``'s word table and its training examples; None if every row is in use."""
        index, key = model.featurizer.words.index, model.featurizer.word_key
        used = 1 + max((index.get(key(t), 1) for e in train_data for t in e.tokens), default=1)
        embedding = model.network.word_embed
        return cls(embedding, used) if used < embedding.weight.shape[0] else None

    def take_gradient(self) -> None:
        """After backward: the rows' gradient is the table's (a view of it, as clipping scales
        it), unless the steps looked words up in the rows themselves."""
        if self.embedding.weight is not self.rows:
            self.rows.grad = None if self.table.grad is None else self.table.grad[: self.rows.shape[0]]

    @contextlib.contextmanager
    def looked_up(self) -> Iterator[None]:
        """Training steps look words up in the rows in use (every training token's id is below
        their end), the whole table back afterwards (for dev words, saving, checkpoints)."""
        self.embedding.weight = self.rows
        try:
            yield
        finally:
            self.embedding.weight = self.table


def _optimizer(config: TaggerConfig, network: torch.nn.Module, rows: _WordRowsInUse | None = None
               ) -> torch.optim.Optimizer:
    tc = config.train
    params = [rows.rows if rows is not None and p is rows.table else p for p in network.parameters()]
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)


def _scheduler(config: TaggerConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    tc = config.train
    if tc.schedule == "linear":
        total = max(tc.epochs * steps_per_epoch, 1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    if tc.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _fitted(state: torch.Tensor, param: torch.Tensor | None, directory: Path) -> torch.Tensor:
    """An optimizer state tensor for ``param``: as saved, or a whole word table's state cut to
    the rows in use (a checkpoint from before :class:`_WordRowsInUse`: the rows past them
    were never updated, so their state is all zero); anything else would fail at the next
    step, and is refused here."""
    if param is not None and (state.dim() == 0 or state.shape == param.shape):
        return state
    if (param is not None and state.dim() == param.dim() and state.shape[1:] == param.shape[1:]
            and state.shape[0] > param.shape[0] and not state[param.shape[0]:].any()):
        return state[: param.shape[0]]
    raise ValueError(f"{directory}: the optimizer state does not fit this run's parameters; train again without resuming")


def _save_checkpoint(directory: Path, network, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Weights, optimiser tensors and RNG state as safetensors; everything else as JSON.

    Both files are written into a new directory that then replaces the old one, so a failed
    write (a full disk) keeps the previous checkpoint whole and leaves nothing partial.
    """
    tensors = {f"model.{k}": v.contiguous() for k, v in network.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, values in opt_state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k not in ("lr_lambdas", "_get_lr_called_within_step")}
    meta = {**state, "param_groups": opt_state["param_groups"], "scheduler": scheduler_state}
    staging, previous = _sibling(directory, "new"), _sibling(directory, "old")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        atomic_write_bytes(staging / "state.safetensors", save(tensors))
        atomic_write_text(staging / "state.json", json.dumps(meta, default=float))
        shutil.rmtree(previous, ignore_errors=True)
        if directory.exists():
            directory.rename(previous)
        staging.rename(directory)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        kept = "the previous checkpoint is kept" if (directory / "state.json").exists() or previous.exists() else "no checkpoint yet"
        raise OSError(error.errno, f"cannot write the checkpoint in {directory.parent} ({error.strerror or error}); {kept}") from error
    shutil.rmtree(previous, ignore_errors=True)


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(f"{directory.name}.{suffix}")


def _recover_checkpoint(directory: Path) -> None:
    """Undo a checkpoint swap that a crash interrupted: keep the complete one, drop the rest."""
    previous = _sibling(directory, "old")
    if not (directory / "state.json").exists() and (previous / "state.json").exists():
        shutil.rmtree(directory, ignore_errors=True)
        previous.rename(directory)
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(_sibling(directory, "new"), ignore_errors=True)


def _load_checkpoint(directory: Path, network, optimizer, scheduler) -> dict[str, Any]:
    meta = json.loads((directory / "state.json").read_text())
    tensors = load_file(str(directory / "state.safetensors"))
    try:
        network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as error:  # other tasks (--aux), labels or sizes than the run that wrote it
        raise ValueError(f"{directory}: the checkpoint does not fit this run's network (the same corpus, "
                         f"--aux files in the same order and settings resume it): {str(error).splitlines()[0]}") from None
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = value
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in per_param.items():
        for key, value in values.items():
            values[key] = _fitted(value, params[index] if index < len(params) else None, directory)
    optimizer.load_state_dict({"state": per_param, "param_groups": meta.pop("param_groups")})
    scheduler.load_state_dict({**scheduler.state_dict(), **meta.pop("scheduler")})
    torch.set_rng_state(tensors["rng.torch"])
    return meta
