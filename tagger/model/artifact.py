"""Model directories: ``config.json``, ``vocab.json``, ``labels.json``, ``weights.safetensors``.

A directory describes itself: loading rebuilds the network from its config and checks
every tensor's name and shape before use. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from tagger.config import TaggerConfig
from tagger.data.batching import Featurizer
from tagger.data.schemes import allowed_transitions
from tagger.data.vocab import Vocab
from tagger.data.writers import atomic_write_bytes, atomic_write_text
from tagger.model.network import SequenceTagger

CONFIG, VOCAB, LABELS, WEIGHTS, METRICS = "config.json", "vocab.json", "labels.json", "weights.safetensors", "metrics.json"
ENSEMBLE = "ensemble.json"  # an ensemble's directory: see tagger.model.ensemble
WORD_TABLE = "word_embed.weight"


class ArtifactError(ValueError):
    """A model directory that is missing, corrupt, truncated or inconsistent."""


@dataclass
class Model:
    """A network with the config and vocabularies that give its ids meaning."""

    config: TaggerConfig
    featurizer: Featurizer
    network: SequenceTagger

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self.config.model.tasks]

    @property
    def members(self) -> list["Model"]:
        """The models whose emissions are averaged: this one (see :mod:`tagger.model.ensemble`)."""
        return [self]

    @property
    def decoders(self) -> torch.nn.ModuleDict:
        """Each task's decoder (CRF or softmax): what turns emissions into tags and marginals."""
        return self.network.decoders

    def decode(self, emissions: dict[str, torch.Tensor], mask: torch.Tensor, scores: bool = True
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Best tags per task (and their marginals), from the tasks' emissions."""
        return self.network.decode(emissions, mask, scores)


def build_model(config: TaggerConfig, words: Vocab, chars: Vocab, labels: dict[str, Vocab]) -> Model:
    """Construct an (untrained) model; constraints come from each span task's label list."""
    constraints = {}
    for task in config.model.tasks:
        if task.kind == "span" and task.decoder == "crf":
            constraints[task.name] = allowed_transitions(labels[task.name].items, task.encoding)
    num_labels = {t.name: len(labels[t.name]) for t in config.model.tasks}
    network = SequenceTagger(config.model, len(words), len(chars), num_labels, constraints)
    encodings = {t.name: t.encoding for t in config.model.tasks if t.kind == "span"}
    featurizer = Featurizer(words, chars, labels, config.model.lowercase, config.model.char.max_length, encodings,
                            casing=config.model.casing_dim > 0)
    return Model(config, featurizer, network)


def save_model(model: Model, directory: str | Path, half: bool = False, metrics: dict[str, Any] | None = None) -> None:
    """Write the model directory (each file atomically); fp16 weights when ``half``."""
    if len(model.members) > 1:
        raise TypeError("an ensemble is saved with tagger.model.ensemble.save_ensemble")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: ((v.half() if half else v.float()) if v.is_floating_point() else v).contiguous()
             for k, v in model.network.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, save_safetensors(state, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG, model.config.model_dump_json(indent=2))
    f = model.featurizer
    atomic_write_text(directory / VOCAB, json.dumps({"words": f.words.items, "chars": f.chars.items}, ensure_ascii=False))
    atomic_write_text(directory / LABELS, json.dumps({t: v.items for t, v in f.labels.items()}, ensure_ascii=False, indent=1))
    if metrics is not None:
        atomic_write_text(directory / METRICS, json.dumps(metrics, indent=2))


def load_single(directory: str | Path) -> Model:
    """Rebuild one model from its directory, refusing anything that does not fit exactly
    (:func:`tagger.model.directory.load_model` loads an ensemble's directory too).

    Raises:
        ArtifactError: a missing file, invalid JSON or config, a corrupt or truncated
            weights file, or tensors whose names or shapes differ from what the config builds.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: not a model directory")
    if (directory / ENSEMBLE).exists():
        raise ArtifactError(f"{directory}: an ensemble's directory; tagger.model.directory.load_model loads it")
    config_json = read_json(directory / CONFIG)
    try:
        config = TaggerConfig.model_validate(config_json)
    except ValidationError as error:
        raise ArtifactError(f"{directory / CONFIG}: invalid config: {error.errors()[0]['msg']} at "
                            f"{'.'.join(map(str, error.errors()[0]['loc']))}") from None
    words, chars = _vocabularies(directory)
    labels = read_json(directory / LABELS)
    try:
        label_vocabs = {t.name: Vocab(labels[t.name], specials=False) for t in config.model.tasks}
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{directory}: vocabulary or label file does not match the config ({error})") from None
    try:
        model = build_model(config, words, chars, label_vocabs)
    except (ValueError, TypeError) as error:  # e.g. a span label that fits no scheme
        raise ArtifactError(f"{directory / LABELS}: labels do not fit the config ({error})") from None
    try:
        state = load_safetensors((directory / WEIGHTS).read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{directory / WEIGHTS}: missing") from None
    except (SafetensorError, ValueError, OSError) as error:
        raise ArtifactError(f"{directory / WEIGHTS}: corrupt or truncated ({error})") from None
    expected = model.network.state_dict()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ArtifactError(f"{directory / WEIGHTS}: tensors do not match the config (missing {missing[:5]}, "
                            f"unexpected {extra[:5]})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ArtifactError(f"{directory / WEIGHTS}: {name} has shape {tuple(tensor.shape)}, "
                                f"the config needs {tuple(expected[name].shape)}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"{directory / WEIGHTS}: {name} holds NaN or infinite values")
    model.network.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    if state[WORD_TABLE].dtype == torch.float16:  # stored in fp16: kept so, at half the memory (the rows
        model.network.word_embed.half()       # looked up are widened to fp32, the same values)
    model.network.eval()
    return model


def prune_words(model: Model, keep: int) -> Model:
    """The model with only the first ``keep`` rows of its word table; the words past them become
    unknown. A vocabulary lists the training words (most frequent first), then those the
    pretrained vectors added (most frequent first), so pruning drops the rarest vector words:
    a model trained with a large ``max_vectors`` ships smaller, measured on dev for what it costs."""
    if len(model.members) > 1:
        raise ValueError("prune an ensemble's members one by one (tagger ensemble puts them together)")
    words = model.featurizer.words
    if keep < 2:
        raise ValueError(f"keep at least 2 word rows (padding and unknown), not {keep}")
    if keep >= len(words):
        return model
    f = model.featurizer
    pruned = build_model(model.config, Vocab(words.items[:keep]), f.chars, f.labels)
    state = model.network.state_dict()
    state[WORD_TABLE] = state[WORD_TABLE][:keep].float()
    pruned.network.load_state_dict(state)
    pruned.network.eval()
    return pruned


def without_auxiliary(model: Model) -> Model:
    """The model less the heads of its auxiliary tasks (learned from other corpora alongside
    its own, ``train.auxiliary``): the same encoder and remaining heads, their tensors shared.
    A model without auxiliary tasks comes back as it is."""
    dropped = {t.name for t in model.config.model.tasks if t.auxiliary}
    if not dropped:
        return model
    config = model.config.model_copy(deep=True)
    config.model.tasks = [t for t in config.model.tasks if not t.auxiliary]
    if not config.model.tasks:
        raise ValueError("a model needs a task of its own besides the auxiliary ones")
    f = model.featurizer
    with torch.random.fork_rng():  # its fresh weights are replaced at once: leave training's random numbers be
        kept = build_model(config, f.words, f.chars, {t: v for t, v in f.labels.items() if t not in dropped})
    names = kept.network.state_dict().keys()
    kept.network.load_state_dict({k: v for k, v in model.network.state_dict().items() if k in names}, assign=True)
    kept.network.train(model.network.training)
    return kept


def read_json(path: Path, raw: bytes | None = None) -> Any:
    """A JSON file's content (``raw``: its bytes, already read); ArtifactError names the file
    when it is missing or invalid."""
    try:
        return json.loads((_read_bytes(path) if raw is None else raw).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error})") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except OSError as error:
        raise ArtifactError(f"{path}: cannot read ({error.strerror or error})") from None


# vocab.json's digest -> its vocabularies, while some loaded model holds them
_VOCABULARIES: weakref.WeakValueDictionary[tuple[str, str], Vocab] = weakref.WeakValueDictionary()


def _vocabularies(directory: Path) -> tuple[Vocab, Vocab]:
    """The word and character vocabularies in ``directory``'s vocab.json. Models loaded in one
    process whose files match byte for byte (an ensemble's members, models trained on one
    corpus) share one pair: nothing changes a vocabulary once built, and a word list holds
    ~7 MB of Python objects at 50,000 words, ~55 MB at 400,000."""
    raw = _read_bytes(directory / VOCAB)
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    words, chars = _VOCABULARIES.get((digest, "words")), _VOCABULARIES.get((digest, "chars"))
    if words is None or chars is None:
        vocab = read_json(directory / VOCAB, raw)
        try:
            words, chars = Vocab(vocab["words"]), Vocab(vocab["chars"])
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(f"{directory / VOCAB}: not a word and character vocabulary ({error})") from None
        _VOCABULARIES[digest, "words"], _VOCABULARIES[digest, "chars"] = words, chars
    return words, chars
