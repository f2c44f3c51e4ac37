"""Conversion between protobuf messages and the tagger library's plain objects."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tagger import Document, Entity, Label, TaggedSentence, TaggedText, TaskPrediction, Token, sentence_entities
from tagger_proto.v1 import tagger_pb2 as pb

from server.registry import ModelEntry


def response_pb(results: Sequence[TaggedText], request_id: str, models: Sequence[ModelEntry],
                tasks: Collection[str] = (), scores: bool = True) -> pb.TagResponse:
    """The response for one text tagged by several models (one tokenization, so the same
    sentences and tokens in each result): labels united per token, entities of every model
    in offset order; only ``tasks`` if given; scores 0 unless ``scores`` (a micro-batch computes
    them for every request in it when one asks). Built from the results' lists, with no per-token
    Python objects between the model and the messages."""
    spans = {task for entry in models for task, kind in entry.tasks.items() if kind == "span"}
    sentences = []
    for k, tokens in enumerate(results[0].sentences):
        prediction: dict[str, TaskPrediction] = {}
        for result in results:
            prediction.update(result.predictions[k])
        if tasks:
            prediction = {task: p for task, p in prediction.items() if task in tasks}
        if not scores:
            prediction = {task: TaskPrediction(p.labels) for task, p in prediction.items()}
        columns = [(task, _labels(p)) for task, p in prediction.items()]
        entities = sorted((e for task, p in prediction.items() if task in spans
                           for e in sentence_entities(results[0].text, tokens, p, task)), key=lambda e: (e.start, e.end))
        sentences.append(pb.Sentence(
            start=tokens[0][1] if tokens else 0, end=tokens[-1][2] if tokens else 0,
            tokens=[pb.Token(text=text, start=start, end=end, labels={task: labels[i] for task, labels in columns})
                    for i, (text, start, end) in enumerate(tokens)],
            entities=[pb.Entity(label=e.label, start=e.start, end=e.end, text=e.text, token_start=e.token_start,
                                token_end=e.token_end, score=e.score or 0.0, task=e.task) for e in entities]))
    return pb.TagResponse(id=request_id, models=[pb.ModelRef(name=m.name, version=m.version) for m in models],
                          sentences=sentences)


_PLAIN: dict[str, pb.Label] = {}  # label -> its message without a score, made once


def _labels(prediction: TaskPrediction) -> list[pb.Label]:
    if prediction.scores is None:
        out = []
        for value in prediction.labels:
            label = _PLAIN.get(value)
            if label is None:
                label = _PLAIN[value] = pb.Label(value=value)
            out.append(label)
        return out
    return [pb.Label(value=value, score=score) for value, score in zip(prediction.labels, prediction.scores)]


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
