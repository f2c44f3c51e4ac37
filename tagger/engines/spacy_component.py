"""A spaCy pipeline component that sets ``token.pos_``, ``token.tag_`` and ``doc.ents``.

Registered through the ``spacy_factories`` entry point, so after ``pip install`` any
pipeline can use it::

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("bilstm_tagger", config={"model": "models/en-core"})
    doc = nlp("Barack Obama visited Paris.")

``config={"backend": "int8"}`` (or ``onnx``, ``onnx-int8``) picks the runtime as
:meth:`tagger.Tagger.load` does.

Tasks map to attributes: ``upos`` -> ``pos_``, ``xpos`` -> ``tag_``, ``ner`` -> ``doc.ents``.
Sentences come from an earlier component (sentencizer, parser) when there is one; otherwise
the whole doc is tagged as one sequence. Whitespace tokens get no label.
"""

from __future__ import annotations

from spacy.language import Language
from spacy.tokens import Doc, Span

from tagger.inference.predict import Tagger


class BiLSTMTaggerComponent:
    def __init__(self, nlp: Language, name: str, model: str, batch_size: int = 64, backend: str = "torch"):
        self.name = name
        self.tagger = Tagger.load(model, backend)  # type: ignore[arg-type]
        self.batch_size = batch_size

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs, batch_size: int | None = None):
        size = batch_size or self.batch_size
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= size:
                yield from self._tag(batch)
                batch = []
        if batch:
            yield from self._tag(batch)

    def _tag(self, docs: list[Doc]):
        pieces = []  # (doc index, spaCy token indices of one sentence)
        for d, doc in enumerate(docs):
            sentences = doc.sents if doc.has_annotation("SENT_START") else [doc[:]]
            for sentence in sentences:
                indices = [t.i for t in sentence if not t.is_space]
                if indices:
                    pieces.append((d, indices))
        per_doc: list[list[list[str]]] = [[] for _ in docs]  # each Doc is one document (document context)
        for d, indices in pieces:
            per_doc[d].append([docs[d][i].text for i in indices])
        tagged = self.tagger.tag_documents(per_doc, scores=False)
        entities: list[list[Span]] = [[] for _ in docs]
        for (d, indices), sentence in zip(pieces, [s for document in tagged for s in document.sentences], strict=True):
            doc = docs[d]
            for i, token in zip(indices, sentence.tokens):
                if "upos" in token.labels:
                    doc[i].pos_ = token.labels["upos"].value
                if "xpos" in token.labels:
                    doc[i].tag_ = token.labels["xpos"].value
            for entity in sentence.entities:
                start, end = indices[entity.token_start], indices[entity.token_end - 1] + 1
                entities[d].append(Span(doc, start, end, label=entity.label))
        for doc, found in zip(docs, entities):
            if any(kind == "span" for kind in self.tagger.tasks.values()):
                doc.ents = found
            yield doc


@Language.factory("bilstm_tagger", default_config={"model": "models/en-core", "batch_size": 64, "backend": "torch"})
def make_bilstm_tagger(nlp: Language, name: str, model: str, batch_size: int, backend: str) -> BiLSTMTaggerComponent:
    return BiLSTMTaggerComponent(nlp, name, model, batch_size, backend)
