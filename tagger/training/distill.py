"""Knowledge distillation: one student model learns what its teachers say.

Teachers (models or ensembles; each may supply different tasks of one multi-task student)
label every training sentence once, gold-labelled and unlabelled alike, each with its own
document context, exactly as they tag at run time. What they say is written to a cache
directory and memory-mapped (:class:`TeacherCache`), so a training step reads it instead of
running four BiLSTMs. The student then trains with :func:`tagger.training.train.train`'s loop
(progress, checkpoints, resume, curve, card, torchrun) on::

    loss = weight * KD(student, teacher) + (1 - weight) * NLL(gold)   sentences with gold labels
    loss = KD(student, teacher)                                       sentences without

For a CRF task, KD is the exact cross-entropy between the teacher's and the student's
distributions over tag sequences (:meth:`tagger.model.crf.CRF.distillation_loss`), which needs
the teacher's marginal per token and its expected transition counts per sentence; for a
softmax task, the per-token cross-entropy. With a temperature T both sides' scores are
divided by T and the term is multiplied by T^2 (Hinton et al. 2015), keeping its gradients
on the scale of the gold term's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from tagger.config import DistillConfig, TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.vocab import Vocab
from tagger.data.writers import atomic_write_text
from tagger.inference.predict import batch_emissions
from tagger.model.artifact import Model
from tagger.model.crf import CRF
from tagger.model.directory import load_model
from tagger.training import distributed
from tagger.training.augment import augment

META = "teachers.json"
CHUNK_SENTENCES = 20_000  # sentences labelled per call (whole documents), so memory stays bounded


class DistillError(ValueError):
    """Teachers and a student that do not fit together, or a cache that is not one."""


def assign_tasks(teachers: Sequence[Model], names: Sequence[str] | None = None) -> dict[str, int]:
    """task -> index of the teacher that supplies it: the first teacher that has it.

    Args:
        names: the student's tasks (default: every teacher's tasks).
    """
    supplied: dict[str, int] = {}
    for k, teacher in enumerate(teachers):
        for task in teacher.tasks:
            supplied.setdefault(task, k)
    wanted = list(names) if names else list(supplied)
    missing = [t for t in wanted if t not in supplied]
    if missing:
        raise DistillError(f"no teacher has the task {', '.join(missing)}; the teachers have {', '.join(supplied)}")
    return {task: supplied[task] for task in wanted}


def student_tasks(teachers: Sequence[Model], assignment: Mapping[str, int]) -> list[TaskConfig]:
    """The student's heads: each the same kind, encoding and decoder as its teacher's."""
    configs = []
    for task, k in assignment.items():
        config = next(t for t in teachers[k].config.model.tasks if t.name == task)
        configs.append(config.model_copy(deep=True))
    return configs


class TeacherCache:
    """What the teachers said about every training sentence, memory-mapped from ``directory``.

    Layout: ``teachers.json`` (fingerprint, tasks, label lists), ``offsets.npy`` (N + 1 token
    offsets), and per task ``TASK.unary.npy`` (tokens x labels, float16: each token's
    marginals) and, for CRF tasks, ``TASK.transitions.npy`` (N x labels x labels, float16:
    each sentence's expected transition counts, the pair marginals summed over positions).
    """

    def __init__(self, directory: str | Path, weight: float = 0.5):
        self.directory, self.weight = Path(directory), weight
        try:
            self.meta = json.loads((self.directory / META).read_text())
            self.offsets = np.load(self.directory / "offsets.npy")
            self.unary = {t: np.load(self.directory / f"{t}.unary.npy", mmap_mode="r") for t in self.meta["tasks"]}
            self.transitions = {t: np.load(self.directory / f"{t}.transitions.npy", mmap_mode="r")
                                for t, spec in self.meta["tasks"].items() if spec["transitions"]}
        except (OSError, ValueError, KeyError) as error:
            raise DistillError(f"{self.directory}: not a complete teacher cache ({error})") from None

    @property
    def sentences(self) -> int:
        return len(self.offsets) - 1

    def labels(self) -> dict[str, Vocab]:
        """Each task's label list, in the teachers' (internal) encoding and order."""
        return {t: Vocab(spec["labels"], specials=False) for t, spec in self.meta["tasks"].items()}

    def batch(self, indices: Sequence[int], width: int) -> dict[str, tuple[Tensor, Tensor | None]]:
        """task -> (unary (B, width, L), transition counts (B, L, L) or None), float32."""
        result = {}
        for task, unary in self.unary.items():
            rows = np.zeros((len(indices), width, unary.shape[1]), dtype=np.float32)
            for row, i in enumerate(indices):
                start, end = self.offsets[i], self.offsets[i + 1]
                rows[row, : end - start] = unary[start:end]
            counts = self.transitions.get(task)
            pairs = torch.from_numpy(counts[np.asarray(indices)].astype(np.float32)) if counts is not None else None
            result[task] = (torch.from_numpy(rows), pairs)
        return result

    def loss(self, network: torch.nn.Module, emissions: Mapping[str, Tensor], mask: Tensor,
             tags: Mapping[str, Tensor], has_tags: Mapping[str, Tensor],
             soft: Mapping[str, tuple[Tensor, Tensor | None]]) -> Tensor:
        """:func:`distillation_objective` with this cache's weight and temperature."""
        return distillation_objective(network, emissions, mask, tags, has_tags, soft, self.weight,
                                      float(self.meta["temperature"]))


def fingerprint(teachers: Sequence[str | Path], assignment: Mapping[str, int], examples: Sequence[Example],
                temperature: float) -> str:
    """Identifies what a cache holds: the teachers' files, who supplies what, the sentences
    and their documents, the temperature."""
    digest = hashlib.sha256()
    for directory in teachers:
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file() and path.suffix in (".json", ".safetensors"):
                digest.update(str(path.relative_to(directory)).encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps([dict(assignment), temperature]).encode())
    for example in examples:
        digest.update(("\x1f".join(example.tokens) + f"\x1e{example.document}\x1d").encode())
    return digest.hexdigest()


def label_examples(teachers: Sequence[Model], assignment: Mapping[str, int], examples: Sequence[Example],
                   directory: str | Path, temperature: float = 1.0, key: str = "", progress: bool = True
                   ) -> TeacherCache:
    """Have the teachers label ``examples`` and write the cache to ``directory`` (through a
    staging sibling, so an interrupted run leaves no partial cache); reuse the cache there if
    its ``key`` (see :func:`fingerprint`) matches."""
    directory = Path(directory)
    if (directory / META).exists():
        try:
            if json.loads((directory / META).read_text()).get("key") == key and key:
                return TeacherCache(directory)
        except (OSError, ValueError):
            pass
    if any(not e.tokens for e in examples):
        raise DistillError("empty sentences cannot be labelled; drop them first")
    staging = directory.with_name(f".{directory.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    lengths = np.array([len(e.tokens) for e in examples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np.save(staging / "offsets.npy", offsets)
    tasks: dict[str, Any] = {}
    unary: dict[str, np.ndarray] = {}
    transitions: dict[str, np.ndarray] = {}
    for task, k in assignment.items():
        labels = teachers[k].featurizer.labels[task].items
        is_crf = isinstance(teachers[k].decoders[task], CRF)
        tasks[task] = {"teacher": k, "labels": labels, "transitions": is_crf}
        unary[task] = np.lib.format.open_memmap(staging / f"{task}.unary.npy", mode="w+", dtype=np.float16,
                                                shape=(int(offsets[-1]), len(labels)))
        if is_crf:
            transitions[task] = np.lib.format.open_memmap(staging / f"{task}.transitions.npy", mode="w+",
                                                          dtype=np.float16, shape=(len(examples), len(labels), len(labels)))
    chunks = list(_document_chunks(examples))
    total = int(lengths.sum()) * len(set(assignment.values()))
    bar = tqdm(total=total, unit="token", desc="teachers", disable=not progress or not sys.stderr.isatty(), leave=False)
    for k in sorted(set(assignment.values())):
        teacher, own = teachers[k], [t for t, j in assignment.items() if j == k]
        if progress:
            tqdm.write(f"teacher {k + 1} of {len(teachers)} ({', '.join(own)}): labelling {len(examples)} sentences")
        for first, last in chunks:
            part = examples[first:last]
            _label_chunk(teacher, own, part, first, offsets, unary, transitions, temperature, bar)
    bar.close()
    for array in (*unary.values(), *transitions.values()):
        array.flush()
    del unary, transitions
    atomic_write_text(staging / META, json.dumps({"key": key, "sentences": len(examples), "tokens": int(offsets[-1]),
                                                  "temperature": temperature, "tasks": tasks}, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return TeacherCache(directory)


def _document_chunks(examples: Sequence[Example]):
    """(first, last) index ranges of about CHUNK_SENTENCES sentences that never split a document."""
    first = 0
    for i in range(1, len(examples) + 1):
        if i == len(examples) or (i - first >= CHUNK_SENTENCES and examples[i].document != examples[i - 1].document):
            yield first, i
            first = i


@torch.inference_mode()
def _label_chunk(teacher: Model, tasks: Sequence[str], part: Sequence[Example], first: int, offsets: np.ndarray,
                 unary: dict[str, np.ndarray], transitions: dict[str, np.ndarray], temperature: float, bar) -> None:
    documents = [e.document if e.document is not None else ("alone", first + i) for i, e in enumerate(part)]
    for member in teacher.members:
        member.network.eval()
    for rows, emissions, mask in batch_emissions(teacher, [e.tokens for e in part], documents, entity_bias=False):
        lengths = mask.sum(1).tolist()
        for task in tasks:
            decoder = teacher.decoders[task]
            if isinstance(decoder, CRF):
                probs, pairs = decoder.pair_marginals(emissions[task], mask, temperature)
                transitions[task][[first + i for i in rows]] = pairs.sum(1).numpy().astype(np.float16)
            else:
                probs = (emissions[task].double() / temperature).softmax(2)
            probs = probs.numpy().astype(np.float16)
            for row, i in enumerate(rows):
                start = offsets[first + i]
                unary[task][start:start + lengths[row]] = probs[row, : lengths[row]]
        bar.update(sum(lengths))


def distillation_objective(network: torch.nn.Module, emissions: Mapping[str, Tensor], mask: Tensor,
                           tags: Mapping[str, Tensor], has_tags: Mapping[str, Tensor],
                           soft: Mapping[str, tuple[Tensor, Tensor | None]], weight: float,
                           temperature: float) -> Tensor:
    """The batch's distillation loss, summed over tasks and sentences, divided by the batch
    size (as :meth:`tagger.model.network.SequenceTagger.loss`)."""
    size = mask.size(0)
    total = mask.new_zeros((), dtype=torch.float32)
    maskf = mask.float()
    for task, (unary, counts) in soft.items():
        decoder, scores = network.decoders[task], emissions[task]
        if isinstance(decoder, CRF):
            kd = decoder.distillation_loss(scores, mask, unary, counts, temperature)
        else:
            kd = -(unary * (scores / temperature).log_softmax(2)).sum(2).mul(maskf).sum(1)
        kd = kd * temperature**2
        gold = has_tags.get(task)
        if gold is not None and bool(gold.any()) and weight < 1:
            nll = torch.zeros_like(kd)
            nll[gold] = -decoder.log_likelihood(scores[gold], tags[task][gold], mask[gold])
            kd = torch.where(gold, weight * kd + (1 - weight) * nll, kd)
        total = total + kd.sum() / max(size, 1)
    return total


def _check_gold(teachers: Sequence[Model], assignment: Mapping[str, int], examples: Sequence[Example]) -> None:
    """Gold labels the student must learn have to be labels its teacher knows."""
    for task, k in assignment.items():
        featurizer = teachers[k].featurizer
        seen = {label for e in examples if task in e.labels for label in featurizer.encode_labels(task, e.labels[task])}
        unknown = seen - set(featurizer.labels[task].items)
        if unknown:
            raise DistillError(f"the gold {task} labels {', '.join(sorted(unknown)[:10])} are not labels of its teacher "
                               f"(teacher {k + 1}); distil from a teacher trained on these labels")
    untaught = {t for e in examples for t in e.labels} - set(assignment)
    if untaught:
        raise DistillError(f"the training data labels {', '.join(sorted(untaught))}, which no teacher supplies")


def altered_copies(config: TaggerConfig, examples: Sequence[Example], copies: int) -> list[Example]:
    """``copies`` altered copies of the gold-labelled examples (:mod:`tagger.training.augment`),
    their documents numbered after every document in ``examples``."""
    span = next((t.name for t in config.model.tasks if t.kind == "span"), None)
    tag = next((t.name for t in config.model.tasks if t.kind == "tag"), None)
    first = max((e.document for e in examples if e.document is not None), default=-1) + 1
    return augment([e for e in examples if e.labels], copies, span, tag, seed=config.train.seed,
                   first_document=first)


def distill(config: TaggerConfig, teachers: Sequence[str | Path], train_data: Sequence[Example],
            dev_data: Sequence[Example], output: str | Path, cache: str | Path | None = None,
            unlabeled: Sequence[str] = (), resume: bool = False, progress: bool = True,
            on_epoch: Callable[[dict[str, Any]], None] | None = None,
            on_step: Callable[[dict[str, Any]], None] | None = None):
    """Train a student on ``train_data`` (gold-labelled and unlabelled examples) from the
    teachers' distributions; the best model by dev score is kept in ``output``.

    Args:
        config: the student's recipe; its ``model.tasks`` (if any) name the tasks to learn
            (default: every teacher's), its ``distill`` section the weight and temperature.
            The student's document context is the recipe's, or else that of the teacher of
            its first span task.
        teachers: model or ensemble directories; a task is learned from the first that has it.
        cache: where the teachers' labels are kept (default: ``output/teachers``, removed
            once training ends); a cache made for the same teachers, sentences and
            temperature is reused (several students from one labelling).
        unlabeled: the unlabelled files among ``train_data``, recorded in the card.

    Returns:
        :class:`tagger.training.train.TrainResult`.
    """
    from tagger.training.train import _train  # the training loop; train imports nothing from here

    output = Path(output)
    if config.train.auxiliary:
        raise ValueError("train.auxiliary is for training from gold labels (tagger train --aux); a student "
                         "learns its tasks from its teachers")
    loaded = [load_model(t) for t in teachers]
    assignment = assign_tasks(loaded, [t.name for t in config.model.tasks] or None)
    train_data = [e for e in train_data if e.tokens]
    _check_gold(loaded, assignment, train_data)
    settings = config.distill or DistillConfig()
    config = config.model_copy(deep=True)
    config.model.tasks = student_tasks(loaded, assignment)
    config.lang = loaded[0].config.lang
    config.distill = settings.model_copy(update={
        "teachers": [str(t) for t in teachers], "unlabeled": list(unlabeled),
        "tasks": {task: str(teachers[k]) for task, k in assignment.items()}})
    span = next((t for t in config.model.tasks if t.kind == "span"), None)
    if span is not None and config.context.weight == 0:
        config.context = loaded[assignment[span.name]].config.context.model_copy()
    if span is not None and not config.decode.entity_bias and not config.train.entity_bias_grid:
        # the teachers label without their entity bias (the distributions they learned); the
        # student decodes with its span teacher's, as it pools with its document context
        config.decode = loaded[assignment[span.name]].config.decode.model_copy()
    if settings.augment:
        train_data = [*train_data, *altered_copies(config, train_data, settings.augment)]
    directory = Path(cache) if cache is not None else output / "teachers"
    context = distributed.setup()
    try:
        if context.is_main:
            key = fingerprint(teachers, assignment, train_data, settings.temperature)
            label_examples(loaded, assignment, train_data, directory, settings.temperature, key, progress)
        distributed.barrier(context)
        labels = TeacherCache(directory, settings.weight)
        del loaded
        result = _train(config, train_data, dev_data, output, resume, progress, on_epoch, on_step, None, context,
                        teacher=labels)
        if cache is None and context.is_main:
            shutil.rmtree(directory, ignore_errors=True)
        return result
    finally:
        distributed.teardown(context)
