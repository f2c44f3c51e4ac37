"""Ensembles: several trained models that tag as one, by averaging their emission scores.

Each member runs its own featurizer and network on the same tokens; the emissions of each
shared task are averaged, and one decoder per task decodes the average. For CRF tasks that
decoder's start, transition and end scores are the members' averages, so decoding maximises
the mean of the members' path scores (a product of experts), and confidences are marginals
under it. Members may differ in anything but the label list of the shared tasks.

An ensemble directory holds ``ensemble.json`` and one ordinary model directory per member::

    en-ner/ensemble.json           {"tasks": ["ner"], "members": ["member-1", "member-2"]}
    en-ner/member-1/config.json    (vocab.json, labels.json, weights.safetensors)

``ensemble.json`` may also give the ensemble's document context (``"context": {"weight":
0.75}``, see :mod:`tagger.inference.context`); without it the first member's applies. Its
entity bias (``"decode": {"entity_bias": 1.0}``, :class:`tagger.config.DecodeConfig`) is the
ensemble's own, 0 without it: a member's was chosen on that member's scores alone.

:func:`tagger.model.directory.load_model` loads either kind; code that tags never needs to know.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor, nn

from tagger.config import ContextConfig, DecodeConfig
from tagger.data.writers import atomic_write_text
from tagger.model.artifact import ENSEMBLE, ArtifactError, Model, build_model, load_single, read_json, save_model
from tagger.model.crf import CRF, SoftmaxDecoder
from tagger.model.network import decode_tasks


class EnsembleConfig(BaseModel):
    """``ensemble.json``: the tasks the ensemble tags and its members' subdirectories."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=1)
    members: list[str] = Field(min_length=1, description="subdirectory names, in order")
    context: ContextConfig | None = Field(None, description="document context of the ensemble; None: member 1's")
    decode: DecodeConfig | None = Field(None, description="the ensemble's entity bias; None: none (a member's "
                                        "was chosen on its own scores, not the average's)")

    @model_validator(mode="after")
    def _plain_names(self) -> "EnsembleConfig":
        for name in self.members:
            if not name or name in (".", "..") or "/" in name or "\\" in name:
                raise ValueError(f"member {name!r} is not a plain subdirectory name")
        if len(set(self.members)) != len(self.members):
            raise ValueError("member names repeat")
        return self


def averaged_decoders(members: Sequence[Model], tasks: Sequence[str]) -> nn.ModuleDict:
    """One decoder per task whose scores are the members' averages."""
    decoders: dict[str, nn.Module] = {}
    for task in tasks:
        parts = [m.network.decoders[task] for m in members]
        if all(isinstance(d, CRF) for d in parts):
            crf = CRF(parts[0].num_tags)
            with torch.no_grad():
                for name in ("start", "transitions", "end"):
                    getattr(crf, name).copy_(torch.stack([getattr(d, name) for d in parts]).mean(0))
                for name in ("start_ok", "trans_ok", "end_ok"):
                    getattr(crf, name).copy_(getattr(parts[0], name))
            decoders[task] = crf
        elif all(isinstance(d, SoftmaxDecoder) for d in parts):
            decoders[task] = SoftmaxDecoder()
        else:
            raise ArtifactError(f"ensemble task {task!r}: members mix CRF and softmax decoders")
    return nn.ModuleDict(decoders).eval()


class Ensemble(Model):
    """Members that tag as one model; ``config`` and ``featurizer`` (labels, scheme decoding)
    are the first member's, restricted to the ensemble's tasks, with ``context`` (document
    context, :mod:`tagger.inference.context`) in place of the first member's if given."""

    def __init__(self, members: Sequence[Model], tasks: Sequence[str] | None = None,
                 context: ContextConfig | None = None, decode: DecodeConfig | None = None):
        if not members:
            raise ArtifactError("an ensemble needs at least one member")
        tasks = list(tasks or members[0].tasks)
        _check_members(members, tasks)
        first = restrict(members[0], tasks)
        config = first.config if context is None else first.config.with_context(**context.model_dump())
        config = config.with_entity_bias(decode.entity_bias if decode is not None else 0.0)
        super().__init__(config, first.featurizer, first.network)
        self._members = list(members)
        self._decoders = averaged_decoders(self._members, tasks)

    @property
    def members(self) -> list[Model]:
        return self._members

    @property
    def decoders(self) -> nn.ModuleDict:
        """The averaged decoders (see :func:`averaged_decoders`)."""
        return self._decoders

    def decode(self, emissions: dict[str, Tensor], mask: Tensor, scores: bool = True
               ) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Decode the averaged emissions with the averaged decoders."""
        return decode_tasks(self._decoders, emissions, mask, scores)


def restrict(model: Model, tasks: Sequence[str]) -> Model:
    """The same model with only ``tasks``' heads (e.g. the NER head of a joint model)."""
    if list(tasks) == model.tasks:
        return model
    missing = set(tasks) - set(model.tasks)
    if missing:
        raise ArtifactError(f"the model has no task {', '.join(sorted(missing))}; it has {', '.join(model.tasks)}")
    config = model.config.model_copy(deep=True)
    config.model.tasks = [t for t in config.model.tasks if t.name in tasks]
    f = model.featurizer
    kept = build_model(config, f.words, f.chars, {t: f.labels[t] for t in tasks})
    state = model.network.state_dict()
    kept.network.load_state_dict({k: state[k] for k in kept.network.state_dict()})
    kept.network.eval()
    return kept


def save_ensemble(members: Sequence[Model], directory: str | Path, tasks: Sequence[str] | None = None,
                  half: bool = True, metrics: Sequence[dict | None] | None = None,
                  context: ContextConfig | None = None, decode: DecodeConfig | None = None) -> None:
    """Write an ensemble directory: each member restricted to ``tasks`` (default: the first
    member's) as ``member-N/`` (with its ``metrics`` if given), then ``ensemble.json``
    (with ``context``, the ensemble's document context, and ``decode``, its entity bias, if given).
    Writes into a hidden sibling and moves it into place, so an existing directory is
    replaced whole or not at all."""
    directory = Path(directory)
    tasks = list(tasks or members[0].tasks)
    restricted = [restrict(m, tasks) for m in members]
    Ensemble(restricted, tasks)  # refuses members that do not fit together
    staging = directory.with_name(f".{directory.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names = [f"member-{i + 1}" for i in range(len(restricted))]
    for i, (name, member) in enumerate(zip(names, restricted)):
        save_model(member, staging / name, half=half, metrics=metrics[i] if metrics else None)
    spec = EnsembleConfig(tasks=tasks, members=names, context=context, decode=decode)
    atomic_write_text(staging / ENSEMBLE, spec.model_dump_json(indent=2, exclude_none=True))
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        directory.replace(old)
        staging.replace(directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.replace(directory)


def read_spec(directory: Path) -> EnsembleConfig:
    """``DIRECTORY/ensemble.json``, validated; ArtifactError if it is not."""
    try:
        return EnsembleConfig.model_validate(read_json(directory / ENSEMBLE))
    except ValidationError as error:
        first = error.errors()[0]
        raise ArtifactError(f"{directory / ENSEMBLE}: invalid: {first['msg']} at "
                            f"{'.'.join(map(str, first['loc']))}") from None


def load_ensemble(directory: str | Path) -> Ensemble:
    """Load an ensemble directory (each member checked as
    :func:`tagger.model.artifact.load_single` checks a model).

    Raises:
        ArtifactError: a bad ``ensemble.json``, a bad member, or members that do not fit.
    """
    directory = Path(directory)
    spec = read_spec(directory)
    members = []
    for name in spec.members:
        member_dir = directory / name
        if (member_dir / ENSEMBLE).exists():
            raise ArtifactError(f"{member_dir}: an ensemble cannot be a member of another")
        members.append(load_single(member_dir))
    return Ensemble(members, spec.tasks, spec.context, spec.decode)


def _check_members(members: Sequence[Model], tasks: Sequence[str]) -> None:
    for i, member in enumerate(members):
        missing = set(tasks) - set(member.tasks)
        if missing:
            raise ArtifactError(f"ensemble member {i + 1} has no task {', '.join(sorted(missing))}")
        if member.config.lang != members[0].config.lang:
            raise ArtifactError(f"ensemble member {i + 1} is for language {member.config.lang!r}, "
                                f"member 1 for {members[0].config.lang!r}")
        for task in tasks:
            if member.featurizer.labels[task].items != members[0].featurizer.labels[task].items:
                raise ArtifactError(f"ensemble member {i + 1}: the labels of {task!r} differ from member 1's "
                                    "(same labels in the same order are needed to average scores)")

