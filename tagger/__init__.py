"""BiLSTM-CRF sequence tagger: readers, model, training, evaluation and the Tagger facade.

The public API the service uses::

    from tagger import Tagger
    tagger = Tagger.load("models/en-pos")
    document = tagger.tag("Raw text. Two sentences.")

The names below are imported on first use, so ``import tagger.data.readers`` (or a Ray worker
that only splits files) does not pay for torch and spaCy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ArtifactError": "tagger.model.artifact",
    **{name: "tagger.model.directory" for name in ("is_model_directory", "weight_files")},
    "CorpusError": "tagger.data.corpus",
    "Sentence": "tagger.data.corpus",
    **{name: "tagger.inference.predict" for name in ("Document", "Entity", "Label", "TaggedSentence", "TaggedText", "Tagger",
                                            "TaskPrediction", "Token", "TokenizedText", "sentence_entities")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tagger' has no attribute {name!r}")
