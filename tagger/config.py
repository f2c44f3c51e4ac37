"""Typed configuration, one pydantic model per concern, saved beside the weights.

A training recipe is a TOML file with ``[data]``, ``[model]`` and ``[train]`` tables;
command-line flags and ``--set section.key=value`` override it. The resolved
:class:`TaggerConfig` is written to ``config.json`` in the model directory, and loading a
model rebuilds it from that file alone.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusFormat(_Strict):
    """How to read a corpus file."""

    format: Literal["auto", "conllu", "columns"] = "auto"
    token_column: int | None = Field(None, ge=1, description="1-based token column (columns format)")
    label_column: int | Literal["upos", "xpos"] | None = Field(
        None, description="1-based label column, or upos/xpos for CoNLL-U; None: detect")
    scheme: Literal["auto", "iob1", "iob2", "iobes", "bioes", "bilou"] = "auto"

    @model_validator(mode="after")
    def _column_is_positive(self) -> "CorpusFormat":
        if isinstance(self.label_column, int) and self.label_column < 1:
            raise ValueError("label_column is 1-based")
        return self


class CharConfig(_Strict):
    encoder: Literal["cnn", "lstm", "none"] = "cnn"
    dim: int = Field(30, ge=1, description="character embedding size")
    hidden: int = Field(50, ge=1, description="CNN filters, or LSTM hidden size per direction")
    kernel: int = Field(3, ge=1, description="CNN window")
    max_length: int = Field(24, ge=1, description="characters kept per word (longer words are cut in the middle)")


class EncoderConfig(_Strict):
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    layers: int = Field(1, ge=1)
    hidden: int = Field(200, ge=1, description="hidden size per direction")
    dropout: float = Field(0.5, ge=0, lt=1)
    merge: Literal["concat", "average"] = "concat"


class TaskConfig(_Strict):
    """One output head. ``span`` tasks (NER) are IOB2 outside, ``encoding`` inside the model."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["tag", "span"]
    column: int | Literal["upos", "xpos"] | None = Field(
        None, description="where this task's labels are in the corpus; None: data.label_column")
    decoder: Literal["crf", "softmax"] = "crf"
    encoding: Literal["iob2", "iobes"] = "iobes"
    auxiliary: bool = Field(False, description="learned from another corpus (train.auxiliary) alongside the "
                            "others, for what it teaches the shared encoder; left out of the saved model")


class ModelConfig(_Strict):
    word_dim: int = Field(100, ge=1, description="word embedding size (the vectors' size when given)")
    lowercase: bool = True
    vectors: str | None = Field(None, description="glove-6b-50d, glove-6b-100d (tagger vectors), or a GloVe/word2vec text file")
    max_vectors: int = Field(50_000, ge=0, description="most frequent pretrained words kept beyond the training vocabulary")
    freeze_vectors: bool = Field(False, description="keep pretrained rows fixed (train only words without a vector)")
    min_count: int = Field(1, ge=1, description="training words seen fewer times map to the unknown word")
    word_dropout: float = Field(0.05, ge=0, lt=1, description="chance a training word is replaced by the unknown word")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on embeddings and encoder outputs")
    casing_dim: int = Field(0, ge=0, description="size of the casing-class embedding (0: no casing feature)")
    char: CharConfig = CharConfig()
    encoder: EncoderConfig = EncoderConfig()
    tasks: list[TaskConfig] = Field(default_factory=list)


class TrainConfig(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1, description="sentences per batch")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(0.002, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    weight_decay: float = Field(0.0, ge=0)
    clip: float = Field(5.0, gt=0, description="gradient norm clipping")
    schedule: Literal["none", "linear", "plateau"] = "plateau"
    patience: int = Field(5, ge=1, description="epochs without dev improvement before stopping")
    seed: int = 1
    threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")
    max_sentences: int | None = Field(None, ge=1, description="use only the first N training sentences (of the "
                                      "corpus's own; train.auxiliary's are all kept)")
    entity_bias_grid: list[Annotated[float, Field(ge=0, le=20)]] = Field(
        default_factory=list, description="after training, choose decode.entity_bias on dev among these values "
        "and 0 (empty: keep it)")
    init_from: str | None = Field(None, description="a trained model directory to start from: its architecture, "
                                  "embeddings and encoder (and the heads of tasks with the same labels); "
                                  "the vocabularies and labels are this corpus's")
    auxiliary: list[str] = Field(default_factory=list, description="labelled corpora of other tasks (CoNLL-U "
                                 "POS, entity files) trained alongside on the shared encoder, a head each, "
                                 "left out of the saved model: tagger train --aux")


class ContextConfig(_Strict):
    """Document context at decoding (:mod:`tagger.inference.context`): the span-task emissions of a
    word that occurs more than once in a document move ``weight`` of the way to their mean
    over its occurrences there. 0 turns it off."""

    weight: float = Field(0.0, ge=0, le=1, description="0: each occurrence alone; 1: all occurrences share one score")
    capitalized_only: bool = Field(True, description="pool only occurrences that start with a capital letter")


class DistillConfig(_Strict):
    """Knowledge distillation (:mod:`tagger.training.distill`): how a student learns from teachers.

    On a sentence with gold labels for a task the loss is ``weight`` times the cross-entropy
    against the teacher plus ``1 - weight`` times the gold labels' negative log-likelihood;
    a sentence without them (unlabelled text) learns from the teacher alone."""

    weight: float = Field(0.5, ge=0, le=1, description="the teachers' share of the loss where gold labels exist")
    temperature: float = Field(1.0, gt=0, le=20, description="teacher and student scores divided by it in the "
                               "distillation term (softer targets above 1)")
    teachers: list[str] = Field(default_factory=list, description="the teacher model directories, as given")
    tasks: dict[str, str] = Field(default_factory=dict, description="task -> the teacher it was learned from")
    unlabeled: list[str] = Field(default_factory=list, description="unlabelled text files the teachers labelled")
    augment: int = Field(0, ge=0, le=10, description="altered copies of each gold training sentence the teachers "
                         "label too (entity mentions swapped, some open-class words replaced; "
                         "tagger.training.augment): inputs the teachers have not memorised")


class DecodeConfig(_Strict):
    """Decoding of span tasks: ``entity_bias`` is added to the scores of the labels that start an
    entity (``B-``, ``S-``) before the CRF decodes (:func:`tagger.inference.predict.batch_emissions`),
    so more mentions are found at some cost in precision: a recall knob for corpora whose
    models find too few (WNUT-17: recall 38% on dev where precision is 64%). 0 leaves scores
    as trained. Training chooses it on dev when ``train.entity_bias_grid`` is set; an ensemble
    has its own (``ensemble.json``; 0 without it)."""

    entity_bias: float = Field(0.0, ge=0, le=20, description="added to entity-start labels' scores (0: off)")


class TaggerConfig(_Strict):
    """Everything that defines a trained model, written as ``config.json``."""

    lang: str = Field("en", description="spaCy language code for tokenizing raw text")
    data: CorpusFormat = CorpusFormat()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    context: ContextConfig = ContextConfig()
    decode: DecodeConfig = DecodeConfig()
    distill: DistillConfig | None = Field(None, description="set for a model trained by distillation")
    recipe: str | None = Field(None, description="the built-in recipe chosen for the corpus (tagger/training/recipes), and why")

    def with_context(self, **changes: Any) -> "TaggerConfig":
        """A deep copy with ``context`` fields changed (``weight=0.5``), validated."""
        copy = self.model_copy(deep=True)
        copy.context = ContextConfig.model_validate({**self.context.model_dump(), **changes})
        return copy

    def with_entity_bias(self, bias: float) -> "TaggerConfig":
        """A deep copy with ``decode.entity_bias`` set, validated."""
        copy = self.model_copy(deep=True)
        copy.decode = DecodeConfig(entity_bias=bias)
        return copy


class ConfigError(ValueError):
    """A config file or override that does not validate."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> TaggerConfig:
    """Read a TOML recipe (or the defaults), apply dotted ``overrides``, validate.

    Args:
        path: a TOML file with ``[data]``, ``[model]``, ``[train]`` tables, or None.
        overrides: ``{"train.lr": 0.01, "model.encoder.layers": 2}``; None values are skipped.
        base: instead of ``path``, the tables as a dict (a built-in recipe's).
    """
    import copy

    raw: dict[str, Any] = copy.deepcopy(base) if base else {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: {error}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {key} is not a table")
        node[leaf] = value
    try:
        return TaggerConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None


def parse_assignment(text: str) -> tuple[str, Any]:
    """``'train.lr=0.01'`` -> ``('train.lr', 0.01)``; the value is read as TOML, else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def _describe(error: ValidationError, path: str | Path | None) -> str:
    where = f"{path}: " if path else ""
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return f"{where}invalid config: {problems}"
