"""Rendering tagged documents for output: JSON records and CoNLL sentences.

Shared by ``tagger tag`` and the service's client, so both write the same files.
"""

from __future__ import annotations

from dataclasses import replace
from typing import IO, Any

from tagger.corpus import Sentence
from tagger.predict import Document
from tagger.writers import write_columns, write_conllu, write_jsonl

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
