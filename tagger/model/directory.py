"""A model directory of either kind: one model (``config.json``) or an ensemble (``ensemble.json``).

Code that tags loads through here and never needs to know which kind it got; the two kinds
themselves live in :mod:`tagger.model.artifact` and :mod:`tagger.model.ensemble`.
"""

from __future__ import annotations

from pathlib import Path

from tagger.model.artifact import CONFIG, ENSEMBLE, WEIGHTS, Model, load_single
from tagger.model.ensemble import load_ensemble, read_spec


def load_model(directory: str | Path) -> Model:
    """Rebuild the model (or ensemble) in ``directory``, refusing anything that does not fit
    exactly; raises ArtifactError as :func:`~tagger.model.artifact.load_single` and
    :func:`~tagger.model.ensemble.load_ensemble` do."""
    directory = Path(directory)
    if (directory / ENSEMBLE).exists():
        return load_ensemble(directory)
    return load_single(directory)


def is_model_directory(directory: str | Path) -> bool:
    """Whether ``directory`` looks like a model (``config.json``) or an ensemble (``ensemble.json``)."""
    directory = Path(directory)
    return (directory / CONFIG).is_file() or (directory / ENSEMBLE).is_file()


def weight_files(directory: str | Path) -> list[Path]:
    """The weights files a model directory loads, in order (one per ensemble member).

    Raises:
        ArtifactError: an unreadable or invalid ``ensemble.json``.
    """
    directory = Path(directory)
    if not (directory / ENSEMBLE).exists():
        return [directory / WEIGHTS]
    return [directory / m / WEIGHTS for m in read_spec(directory).members]
