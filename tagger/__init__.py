"""BiLSTM-CRF sequence tagger: readers, model, training, evaluation and the Tagger facade.

The public API the service uses::

    from tagger import Tagger
    tagger = Tagger.load("models/en-pos")
    document = tagger.tag("Raw text. Two sentences.")
"""

from tagger.artifact import ArtifactError
from tagger.corpus import CorpusError, Sentence
from tagger.predict import Document, Entity, Label, TaggedSentence, Tagger, Token, TokenizedText

__all__ = ["ArtifactError", "CorpusError", "Document", "Entity", "Label", "Sentence", "TaggedSentence",
           "Tagger", "Token", "TokenizedText"]
