"""Rendering tagged documents for output: JSON records and CoNLL sentences.

Shared by ``tagger tag`` and the service's client, so both write the same files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import replace
from json.encoder import encode_basestring
from typing import IO, Any

from tagger.data.corpus import Sentence
from tagger.data.writers import write_columns, write_conllu, write_jsonl
from tagger.inference.predict import Document, TaggedText, sentence_entities

FORMATS = ("jsonl", "conllu", "conll")


def document_record(doc_id: Any, document: Document, tasks: list[str]) -> dict[str, Any]:
    """``{"id", "tokens": [{text, start, end, label, score}], "entities": [...]}``; ``label`` is the
    first task's, and with several tasks each token also has ``labels`` by task."""
    primary = tasks[0]
    tokens = []
    for sentence in document.sentences:
        for token in sentence.tokens:
            label = token.labels[primary]
            item: dict[str, Any] = {"text": token.text, "start": token.start, "end": token.end,
                                    "label": label.value, "score": label.score}
            if len(tasks) > 1:
                item["labels"] = {t: {"value": v.value, "score": v.score} for t, v in token.labels.items()}
            tokens.append(item)
    entities = [{"text": e.text, "start": e.start, "end": e.end, "label": e.label, "score": e.score}
                for s in document.sentences for e in s.entities]
    return {"id": doc_id, "tokens": tokens, "entities": entities}


def jsonl_line(doc_id: Any, tagged: TaggedText, tasks: list[str], span_tasks: Collection[str]) -> str:
    """``json.dumps(document_record(doc_id, document, tasks), ensure_ascii=False) + "\\n"`` for the
    document of ``tagged``, byte for byte, written from its lists without building per-token
    objects or dicts: strings go through the encoder ``json.dumps`` itself uses (labels and task
    names once each), numbers through ``repr`` as ``json.dumps`` does. ``span_tasks``: the
    tasks whose labels make entities."""
    primary, text, q = tasks[0], tagged.text, _QUOTED
    tokens: list[str] = []
    entities: list[str] = []
    for sentence, prediction in zip(tagged.sentences, tagged.predictions):
        if not sentence:
            continue
        main = prediction[primary]
        scores = _numbers(main.scores, len(sentence))
        heads = [f'{{"text": {encode_basestring(t)}, "start": {s}, "end": {e}, "label": {q[label]}, "score": {score}'
                 for (t, s, e), label, score in zip(sentence, main.labels, scores)]
        if len(tasks) > 1:  # every task's label too, in the prediction's order (a Document's)
            columns = []
            for task, result in prediction.items():
                name = q[task]
                values = scores if task == primary else _numbers(result.scores, len(sentence))
                columns.append([f'{name}: {{"value": {q[label]}, "score": {score}}}'
                                for label, score in zip(result.labels, values)])
            tokens.extend(f'{head}, "labels": {{{", ".join(parts)}}}}}' for head, *parts in zip(heads, *columns))
        else:
            tokens.extend(head + "}" for head in heads)
        for task, result in prediction.items():
            if task in span_tasks:
                entities.extend(f'{{"text": {encode_basestring(e.text)}, "start": {e.start}, "end": {e.end}, '
                                f'"label": {q[e.label]}, "score": {_number(e.score)}}}'
                                for e in sentence_entities(text, sentence, result, task))
    return f'{{"id": {json.dumps(doc_id, ensure_ascii=False)}, "tokens": [{", ".join(tokens)}], "entities": [{", ".join(entities)}]}}\n'


class _Quoted(dict):
    """Labels and task names as JSON strings, each encoded once (a model has a few hundred)."""

    def __missing__(self, value: str) -> str:
        if len(self) > 100_000:  # labels come from models; bound it all the same
            self.clear()
        out = self[value] = encode_basestring(value)
        return out


_QUOTED = _Quoted()


def _numbers(values: list[float] | None, count: int) -> list[str]:
    """Scores as ``json.dumps`` writes them (``null`` for each of ``count`` tokens without)."""
    if values is None:
        return ["null"] * count
    if math.isfinite(sum(values)):  # every one finite (a NaN or infinity makes the sum one): repr each
        return list(map(float.__repr__, values))
    return [_number(x) for x in values]


def _number(value: float | None) -> str:
    """A score as ``json.dumps`` writes it."""
    if value is None:
        return "null"
    return float.__repr__(value) if math.isfinite(value) else json.dumps(value)


def document_sentences(document: Document, tasks: list[str], source: Sentence | None = None,
                       with_labels: bool = False) -> list[Sentence]:
    """CoNLL-U rows for a tagged document: ``upos``/``xpos`` fill columns 4/5, other tasks go
    to MISC as ``task=label``; a ``source`` sentence (read from CoNLL-U) keeps its other columns.
    ``with_labels`` also sets the first task's labels (for two-column output)."""
    sentences = []
    for sentence in document.sentences:
        rows = []
        for i, token in enumerate(sentence.tokens):
            row = list(source.rows[i]) if source is not None and source.rows else [str(i + 1), token.text] + ["_"] * 8
            misc = [f"{t}={v.value}" for t, v in token.labels.items() if t not in ("upos", "xpos")]
            for task, column in (("upos", 3), ("xpos", 4)):
                if task in token.labels:
                    row[column] = token.labels[task].value
            if misc:
                row[9] = "|".join(misc if row[9] == "_" else [row[9], *misc])
            rows.append(tuple(row))
        labels = tuple(t.labels[tasks[0]].value for t in sentence.tokens) if with_labels else None
        text = source.text if source is not None else document.text[sentence.start:sentence.end].replace("\n", " ")
        sentences.append(Sentence(tuple(t.text for t in sentence.tokens), labels, text=text, rows=tuple(rows),
                                  comments=source.comments if source is not None else ()))
    return sentences


def split_sentences(document: Document) -> list[Document]:
    """Split a document of pre-tokenized sentences (``Tagger.tag_tokens``) into one document
    per sentence, with the offsets a sentence tagged alone gets (into its tokens joined by
    spaces)."""
    out = []
    for sentence in document.sentences:
        base = sentence.start
        tokens = [replace(t, start=t.start - base, end=t.end - base) for t in sentence.tokens]
        entities = [replace(e, start=e.start - base, end=e.end - base) for e in sentence.entities]
        out.append(Document(document.text[sentence.start:sentence.end],
                            [replace(sentence, start=0, end=sentence.end - base, tokens=tokens, entities=entities)]))
    return out


def write_document(handle: IO[str], output_format: str, doc_id: Any, document: Document, tasks: list[str],
                   source: Sentence | None = None) -> None:
    """Write one tagged document as JSONL, CoNLL-U or two-column CoNLL."""
    if output_format == "jsonl":
        write_jsonl([document_record(doc_id, document, tasks)], handle)
    elif output_format == "conllu":
        write_conllu(document_sentences(document, tasks, source), handle)
    elif output_format == "conll":
        write_columns(document_sentences(document, tasks, source, with_labels=True), handle)
    else:
        raise ValueError(f"output format must be one of {', '.join(FORMATS)}")
