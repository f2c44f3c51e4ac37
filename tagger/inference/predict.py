"""Prediction: batched decoding, and the :class:`Tagger` facade the service uses.

Confidence: a token's score is the probability of its chosen label under the model,
the CRF marginal (forward-backward) or the softmax probability. An entity's score is the
smallest of its tokens' scores; since the probability of the whole span labelling can be
no larger than any one of its token marginals, this is an upper bound on it, and it is
cheap, monotone and comparable across entities.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch.nn.utils.rnn import pad_sequence

from tagger.model.artifact import Model

from tagger.data.batching import Example, bucketed, length_mask
from tagger.data.schemes import entity_types, labels_for, spans
from tagger.data.tokenize import Tokenizer
from tagger.inference.context import pool_emissions
from tagger.inference.quantize import quantized_model
from tagger.inference.runtime import OnnxEncoder, onnx_available
from tagger.model.directory import load_model

log = logging.getLogger(__name__)
DEFAULT_BATCH_TOKENS = 4096
Backend = Literal["torch", "onnx", "auto", "int8", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)


@dataclass(frozen=True)
class TaskPrediction:
    labels: list[str]  # IOB2 for span tasks
    scores: list[float] | None = None


def predict(model: Model, sentences: Sequence[Sequence[str]], scores: bool = True, batch_size: int = 256,
            max_tokens: int = DEFAULT_BATCH_TOKENS, encoder: OnnxEncoder | Sequence[OnnxEncoder] | None = None,
            documents: Sequence[Hashable] | None = None) -> list[dict[str, TaskPrediction]]:
    """Tag tokenized sentences, in batches of similar length; results in input order.

    Args:
        model: a model or an ensemble (whose members' emissions are averaged).
        encoder: run the BiLSTM and output layers in ONNX Runtime instead of torch (one
            encoder per member of an ensemble).
        documents: the document of each sentence, for a model with document context
            (:mod:`tagger.inference.context`); None: each sentence is a document of its own.

    Returns:
        One dict per sentence: task -> labels (and scores).
    """
    results: list[dict[str, TaskPrediction]] = [{} for _ in sentences]
    for i, sentence in enumerate(sentences):
        if not sentence:
            results[i] = {t: TaskPrediction([], [] if scores else None) for t in model.tasks}
    lengths = [len(s) for s in sentences]
    training = [m.network for m in model.members if m.network.training]
    for network in training:  # walking every module costs more than tagging a short sentence
        network.eval()
    try:
        with torch.inference_mode():
            for rows, emissions, mask in batch_emissions(model, sentences, documents, batch_size, max_tokens, encoder):
                _store(results, model, model.decode(emissions, mask, scores=scores), rows, lengths)
    finally:
        for network in training:
            network.train()
    return results


def batch_emissions(model: Model, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable] | None = None,
                    batch_size: int = 256, max_tokens: int = DEFAULT_BATCH_TOKENS,
                    encoder: OnnxEncoder | Sequence[OnnxEncoder] | None = None, entity_bias: bool = True
                    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor], torch.Tensor]]:
    """What the model's decoders see, a batch of similar lengths at a time: the batch's
    sentence indices, each task's emissions (averaged over an ensemble's members, document
    context pooled in and, unless ``entity_bias`` is False, the model's entity bias added, as
    :func:`predict` does) and the mask. Empty sentences are skipped. Call it in eval and
    inference mode (as :func:`predict` does)."""
    lengths = [len(s) for s in sentences]
    members, tasks = model.members, model.tasks
    encoders = list(encoder) if isinstance(encoder, Sequence) else [encoder] * len(members)
    if len(encoders) != len(members):
        raise ValueError(f"{len(encoders)} onnx encoders for {len(members)} ensemble members")
    if documents is not None and len(documents) != len(sentences):
        raise ValueError(f"{len(documents)} document ids for {len(sentences)} sentences")
    context = model.config.context
    pooled = [t.name for t in model.config.model.tasks if t.kind == "span"] if context.weight > 0 else []
    batches = [nonempty for indices in bucketed(lengths, batch_size, max_tokens=max_tokens)
               if (nonempty := [i for i in indices if lengths[i]])]
    bias = _entity_bias(model) if entity_bias else (lambda emissions: emissions)
    if not pooled:
        for nonempty in batches:
            emissions, mask = _emissions(members, encoders, [Example(tuple(sentences[i])) for i in nonempty], tasks)
            yield nonempty, bias(emissions), mask
        return
    # document context: every sentence's emissions first, then pooled, then batched again
    rows: dict[int, dict[str, torch.Tensor]] = {}
    for nonempty in batches:
        emissions, _ = _emissions(members, encoders, [Example(tuple(sentences[i])) for i in nonempty], tasks)
        for row, i in enumerate(nonempty):
            rows[i] = {task: values[row, : lengths[i]] for task, values in emissions.items()}
    order = list(rows)
    for task in pooled:
        mixed = pool_emissions([sentences[i] for i in order], [rows[i][task] for i in order],
                               [documents[i] if documents is not None else i for i in order], context)
        for i, emission in zip(order, mixed):
            rows[i][task] = emission
    for nonempty in batches:
        emissions = {task: pad_sequence([rows[i][task] for i in nonempty], batch_first=True) for task in tasks}
        yield nonempty, bias(emissions), length_mask([lengths[i] for i in nonempty])


def _entity_bias(model: Model) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """What adds the model's ``decode.entity_bias`` to its span tasks' entity-start labels
    (``B-``, ``S-``) in a batch's emissions (:class:`tagger.config.DecodeConfig`); the identity
    when it is 0."""
    bias = model.config.decode.entity_bias
    shifts = {t.name: torch.tensor([bias if label[:2] in ("B-", "S-") else 0.0
                                    for label in model.featurizer.labels[t.name].items])
              for t in model.config.model.tasks if t.kind == "span"} if bias else {}
    if not shifts:
        return lambda emissions: emissions

    def add(emissions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for task, shift in shifts.items():
            emissions[task] = emissions[task] + shift.to(emissions[task].dtype)
        return emissions

    return add


def _store(results: list[dict[str, TaskPrediction]], model: Model,
           decoded: dict[str, tuple[torch.Tensor, torch.Tensor | None]], rows: Sequence[int],
           lengths: Sequence[int]) -> None:
    """Write a decoded batch into ``results``: row k of the batch is sentence ``rows[k]``."""
    featurizer = model.featurizer
    for task, (tags, probs) in decoded.items():
        vocab = featurizer.labels[task]
        tag_rows = tags.tolist()
        prob_rows = probs.tolist() if probs is not None else None
        for row, i in enumerate(rows):
            n = lengths[i]
            labels = featurizer.decode_labels(task, [vocab.items[t] for t in tag_rows[row][:n]])
            results[i][task] = TaskPrediction(labels, prob_rows[row][:n] if prob_rows else None)


def _emissions(members: Sequence[Model], encoders: Sequence[OnnxEncoder | None], examples: Sequence[Example],
               tasks: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each task's emissions for a batch, averaged over the members; and the batch's mask.

    An ensemble's members run side by side on threads when torch runs one thread per call
    (the service's setting): their LSTMs release the GIL, so three members use the cores
    that one could not. With more intra-op threads they run one after the other: a second
    thread running OpenMP work makes libgomp stop spinning process-wide, and small calls
    then cost four times as long."""
    if len(members) > 1 and torch.get_num_threads() == 1:  # the first member on this thread, the rest beside it
        others = [_member_pool().submit(_member_emissions, m, e, examples) for m, e in zip(members[1:], encoders[1:])]
        outputs = [_member_emissions(members[0], encoders[0], examples), *(future.result() for future in others)]
    else:
        outputs = [_member_emissions(member, encoder, examples) for member, encoder in zip(members, encoders)]
    total: dict[str, torch.Tensor] = {}
    for emissions, _ in outputs:
        for task in tasks:
            total[task] = emissions[task] if task not in total else total[task] + emissions[task]
    if len(members) > 1:
        total = {task: scores / len(members) for task, scores in total.items()}
    return total, outputs[-1][1]


def _member_emissions(member: Model, encoder: OnnxEncoder | None, examples: Sequence[Example]
                      ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    network = member.network
    with torch.inference_mode():  # a pool thread does not inherit the caller's mode
        batch = member.featurizer.batch(examples, with_labels=False)
        if encoder is None:
            return network(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing), batch.mask
        if encoder.features:  # the whole network but the decoders in one ONNX Runtime call
            return encoder.emissions(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing), batch.mask
        features = network.features(batch.words, batch.chars, batch.char_index, batch.casing)
        return encoder(features, batch.mask.sum(1)), batch.mask


@functools.cache
def _member_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="tagger-member")


os.register_at_fork(after_in_child=_member_pool.cache_clear)  # a forked process has none of the pool's threads


@dataclass(frozen=True)
class TokenizedText:
    """A raw text already split into sentences of ``(token, start, end)``; lets several
    models share one tokenization (see :meth:`Tagger.tokenize`)."""

    text: str
    sentences: list[list[tuple[str, int, int]]]


@dataclass(frozen=True, slots=True)
class TaggedText:
    """A tagged text as lists: its sentences of ``(token, start, end)`` and each sentence's
    prediction (task -> labels and scores); see :meth:`Tagger.predict_documents`."""

    text: str
    sentences: list[list[tuple[str, int, int]]]
    predictions: list[dict[str, TaskPrediction]]


@dataclass(slots=True)
class Label:
    value: str
    score: float | None = None


@dataclass(slots=True)
class Token:
    text: str
    start: int
    end: int
    labels: dict[str, Label] = field(default_factory=dict)


@dataclass(slots=True)
class Entity:
    label: str
    start: int
    end: int
    text: str
    token_start: int
    token_end: int  # exclusive
    score: float | None = None
    task: str = "ner"


@dataclass(slots=True)
class TaggedSentence:
    start: int
    end: int
    tokens: list[Token]
    entities: list[Entity]


@dataclass(slots=True)
class Document:
    """A tagged text: offsets of sentences, tokens and entities index into ``text``."""

    text: str
    sentences: list[TaggedSentence]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FORKED_AWAY: list[Any] = []  # see Tagger.for_forked_process


class Tagger:
    """Load a model directory and tag raw text or tokenized sentences.

    The only entry point the service uses; it returns plain Python objects.
    """

    def __init__(self, model: Model, path: str | Path | None = None, backend: Backend = "torch"):
        """``backend`` as :meth:`load` takes it (``int8`` tags with a quantized copy of ``model``)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "int8":
            model = quantized_model(model)
        self.model = model
        self.path = str(path) if path else None
        self.tokenizer = Tokenizer(model.config.lang)
        self._kinds = {t.name: t.kind for t in model.config.model.tasks}
        self._encoder: list[OnnxEncoder] | None = None
        if backend in ("onnx", "onnx-int8") or backend == "auto" and onnx_available():
            try:
                self._encoder = [OnnxEncoder(member.network, int8=backend == "onnx-int8") for member in model.members]
            except Exception as error:  # auto: an ONNX Runtime that cannot run here is not fatal
                if backend != "auto":
                    raise
                log.warning(f"onnx backend unavailable ({error}); using torch")
        self.backend = backend if backend != "auto" else "onnx" if self._encoder is not None else "torch"

    @classmethod
    def load(cls, path: str | Path, backend: Backend = "torch") -> "Tagger":
        """Raises :class:`tagger.model.artifact.ArtifactError` for a bad directory.

        Args:
            backend: ``torch``; ``onnx`` to run the encoder in ONNX Runtime (faster, same
                labels; needs ``tagger[onnx]``); ``auto``: onnx if that is installed;
                ``int8``: torch with the encoder's weights in int8 (faster on whole files;
                labels may differ on a few tokens in a thousand: :mod:`tagger.inference.quantize`);
                ``onnx-int8``: the ONNX graph with int8 weights (the fastest; as many labels differ).
        """
        return cls(load_model(path), path, backend)

    def for_forked_process(self, threads: int = 1) -> None:
        """Make this tagger fit to run in a process forked from the one that loaded it (the
        file job's workers): torch on ``threads`` threads, and ONNX Runtime sessions of its
        own (a session's thread pool does not survive a fork). Only the forked process calls it."""
        torch.set_num_threads(threads)
        if self._encoder is not None:
            # the inherited sessions are never freed: their destructor waits on pool threads
            # that stayed in the parent (it hangs). A forked worker ends with os._exit.
            _FORKED_AWAY.append(self._encoder)
            self._encoder = [OnnxEncoder(member.network, threads, int8=self.backend == "onnx-int8")
                             for member in self.model.members]

    @property
    def tasks(self) -> dict[str, str]:
        """Task name -> kind (``tag`` or ``span``)."""
        return dict(self._kinds)

    @property
    def lang(self) -> str:
        """The language its tokenizer splits (spaCy's code, e.g. ``en``)."""
        return self.model.config.lang

    @property
    def context_weight(self) -> float:
        """The model's document context weight (:mod:`tagger.inference.context`); 0: sentences alone."""
        return self.model.config.context.weight

    @property
    def labels(self) -> dict[str, list[str]]:
        """Task name -> output labels (IOB2 for span tasks)."""
        out = {}
        for task, kind in self.tasks.items():
            items = self.model.featurizer.labels[task].items
            out[task] = labels_for(entity_types(items), "iob2") if kind == "span" else list(items)
        return out

    def tag(self, text: str, scores: bool = True) -> Document:
        """Tokenize, sentence-split and tag one text."""
        return self.tag_documents([text], scores)[0]

    def tag_texts(self, texts: Sequence[str], scores: bool = True) -> list[Document]:
        """Tag many texts in one batched pass (tokenized in bulk)."""
        return self.tag_documents(texts, scores)

    def tag_tokens(self, sentences: Sequence[Sequence[str]], scores: bool = True) -> Document:
        """Tag pre-tokenized sentences, one document (for document context). Offsets index into
        the document text made by joining each sentence's tokens with single spaces and the
        sentences with newlines."""
        return self.tag_documents([sentences], scores)[0]

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        """Split raw texts into sentences and tokens with offsets, for :meth:`tag_documents`."""
        return [TokenizedText(text, sentences) for text, sentences in zip(texts, self.tokenizer.pipe(texts))]

    def tag_documents(self, documents: Sequence[str | TokenizedText | Sequence[Sequence[str]]],
                      scores: bool = True) -> list[Document]:
        """Tag a mix of raw texts, tokenized texts and pre-tokenized documents in one batched pass;
        each is one document for document context.

        Args:
            documents: each a raw text (tokenized here), a :class:`TokenizedText`, or a list
                of token lists.
            scores: compute confidences (CRF marginals).
        """
        with collector_paused():
            return [self.document(tagged) for tagged in self.predict_documents(documents, scores)]

    def predict_sentences(self, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable] | None = None,
                          scores: bool = False) -> list[dict[str, TaskPrediction]]:
        """:func:`predict` on tokenized sentences with this tagger's backend: each sentence's
        labels (and scores) per task; ``documents`` as :func:`predict` takes them (evaluation
        on gold tokens, with a corpus's documents for document context)."""
        return predict(self.model, sentences, scores=scores, encoder=self._encoder, documents=documents)

    def predict_documents(self, documents: Sequence[str | TokenizedText | Sequence[Sequence[str]]],
                          scores: bool = True) -> list[TaggedText]:
        """:meth:`tag_documents` without building the per-token objects: each document's
        sentences and their labels as lists (what fast writers and the service serialize from).
        :meth:`document` turns one into a :class:`Document`."""
        raw = [d for d in documents if isinstance(d, str)]
        tokenized = iter(self.tokenizer.pipe(raw) if raw else ())  # tokenized input leaves the tokenizer alone
        prepared: list[tuple[str, list[list[tuple[str, int, int]]]]] = []
        for document in documents:
            if isinstance(document, str):
                prepared.append((document, next(tokenized)))
            elif isinstance(document, TokenizedText):
                prepared.append((document.text, document.sentences))
            else:
                prepared.append(_positioned(document))
        flat = [[t[0] for t in sentence] for _, sentences in prepared for sentence in sentences]
        doc_ids = [k for k, (_, sentences) in enumerate(prepared) for _ in sentences]
        with collector_paused():
            predictions = iter(predict(self.model, flat, scores=scores, encoder=self._encoder, documents=doc_ids))
            return [TaggedText(text, sentences, [next(predictions) for _ in sentences]) for text, sentences in prepared]

    def document(self, tagged: TaggedText) -> Document:
        """The :class:`Document` of a :meth:`predict_documents` result."""
        text = tagged.text
        return Document(text, [self._sentence(text, s, p) for s, p in zip(tagged.sentences, tagged.predictions)])

    def _sentence(self, text: str, tokens: Sequence[tuple[str, int, int]],
                  prediction: dict[str, TaskPrediction]) -> TaggedSentence:
        out = [Token(t, s, e, {}) for t, s, e in tokens]
        entities: list[Entity] = []
        for task, result in prediction.items():
            probs = result.scores
            if probs:
                for token, label, prob in zip(out, result.labels, probs):
                    token.labels[task] = Label(label, prob)
            else:
                for token, label in zip(out, result.labels):
                    token.labels[task] = Label(label)
            if self._kinds[task] == "span":
                entities.extend(sentence_entities(text, tokens, result, task))
        start = out[0].start if out else 0
        end = out[-1].end if out else 0
        return TaggedSentence(start, end, out, entities)


def sentence_entities(text: str, tokens: Sequence[tuple[str, int, int]], result: TaskPrediction,
                      task: str) -> Iterator[Entity]:
    """The entities of one span task's labels over a sentence's ``(token, start, end)``."""
    probs = result.scores
    for span in spans(result.labels):
        start, end = tokens[span.start][1], tokens[span.end - 1][2]
        score = min(probs[span.start : span.end]) if probs else None
        yield Entity(span.label, start, end, text[start:end], span.start, span.end, score, task)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a call builds its output.

    A call makes a few objects per token (tokens, labels, entities) and no reference cycles,
    but each 700 new objects start a collection, and the older generations' collections
    rescan every live object (the model's included): a third of the time of tagging the EWT
    test set in one call went there. Reference counting still frees everything as usual.
    Threads: the collector is re-enabled by whichever call paused it.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _positioned(sentences: Sequence[Sequence[str]]) -> tuple[str, list[list[tuple[str, int, int]]]]:
    """Give pre-tokenized sentences offsets into ``"\\n".join(" ".join(tokens))``."""
    positioned, offset = [], 0
    for sentence in sentences:
        tokens = []
        for token in sentence:
            tokens.append((token, offset, offset + len(token)))
            offset += len(token) + 1
        offset += 0 if sentence else 1
        positioned.append(tokens)
    return "\n".join(" ".join(sentence) for sentence in sentences), positioned


def tag_corpus(model: Model, sentences: Iterable[Sequence[str]], task: str,
               documents: Sequence[Hashable] | None = None) -> list[list[str]]:
    """Labels of one task for tokenized sentences (used by evaluation); ``documents`` as
    :func:`predict` takes them (:func:`tagger.data.corpus.document_ids` reads a corpus's)."""
    return [p[task].labels for p in predict(model, list(sentences), scores=False, documents=documents)]
