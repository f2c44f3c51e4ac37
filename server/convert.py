"""Conversion between protobuf messages and the tagger library's plain objects."""

from __future__ import annotations

from collections.abc import Sequence

from tagger import Document, Entity, Label, TaggedSentence, Token
from tagger_proto.v1 import tagger_pb2 as pb

from server.registry import ModelEntry


def merge(documents: Sequence[Document], tasks: Sequence[str] | None = None) -> Document:
    """One document from the same text tagged by several models (same tokenization): labels
    united per token, entities of every model in offset order; only ``tasks`` if given."""
    first = documents[0]
    sentences = []
    for index, sentence in enumerate(first.sentences):
        parts = [d.sentences[index] for d in documents]
        tokens = []
        for position, token in enumerate(sentence.tokens):
            labels = {}
            for part in parts:
                labels.update(part.tokens[position].labels)
            tokens.append(Token(token.text, token.start, token.end,
                                {t: v for t, v in labels.items() if not tasks or t in tasks}))
        entities = sorted((e for part in parts for e in part.entities if not tasks or e.task in tasks),
                          key=lambda e: (e.start, e.end))
        sentences.append(TaggedSentence(sentence.start, sentence.end, tokens, entities))
    return Document(first.text, sentences)


def document_to_pb(document: Document, request_id: str, models: Sequence[ModelEntry]) -> pb.TagResponse:
    response = pb.TagResponse(id=request_id, models=[pb.ModelRef(name=m.name, version=m.version) for m in models])
    for sentence in document.sentences:
        out = response.sentences.add(start=sentence.start, end=sentence.end)
        for token in sentence.tokens:
            message = out.tokens.add(text=token.text, start=token.start, end=token.end)
            for task, label in token.labels.items():
                message.labels[task].CopyFrom(pb.Label(value=label.value, score=label.score or 0.0))
        for entity in sentence.entities:
            out.entities.add(label=entity.label, start=entity.start, end=entity.end, text=entity.text,
                             token_start=entity.token_start, token_end=entity.token_end,
                             score=entity.score or 0.0, task=entity.task)
    return response


def document_from_pb(response: pb.TagResponse, text: str) -> Document:
    """The client's view: a response back into the library's objects (for writing files)."""
    sentences = []
    for sentence in response.sentences:
        tokens = [Token(t.text, t.start, t.end, {k: Label(v.value, v.score) for k, v in t.labels.items()})
                  for t in sentence.tokens]
        entities = [Entity(e.label, e.start, e.end, e.text, e.token_start, e.token_end, e.score, e.task)
                    for e in sentence.entities]
        sentences.append(TaggedSentence(sentence.start, sentence.end, tokens, entities))
    return Document(text, sentences)


def model_info(entry: ModelEntry, default: bool) -> pb.ModelInfo:
    labels = entry.tagger.labels
    return pb.ModelInfo(
        name=entry.name, version=entry.version, default=default, context_weight=entry.tagger.context_weight,
        tasks=[pb.TaskInfo(name=task, kind=kind, labels=labels[task], test_metrics=entry.test_metrics.get(task, {}))
               for task, kind in entry.tasks.items()],
    )
