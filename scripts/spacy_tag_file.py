"""spaCy's side of the file job in `make bench`: what `tagger tag` does, done with spaCy.

Usage: python scripts/spacy_tag_file.py PIPELINE INPUT.jsonl OUTPUT.jsonl [PROCESSES]

Reads JSONL records with ``id`` and ``text``, tags them with ``nlp.pipe`` (the pipeline built
by scripts/spacy_baseline.py, with spaCy's sentencizer in front as in the in-process bench),
and writes one record per document: ``{"id", "tokens": [{text, start, end, label}],
"entities": [{text, start, end, label}]}`` (``label``: the tagger's tag). The records are
those of ``tagger tag --no-scores`` less the scores, written as a user would write them.
``PROCESSES`` > 1: ``nlp.pipe(n_process=...)``, spaCy's own worker processes (as ``tagger tag
--workers``).
"""

from __future__ import annotations

import json
import sys


def main(pipeline: str, source: str, target: str, processes: str = "1") -> None:
    import spacy

    nlp = spacy.load(pipeline)
    nlp.add_pipe("sentencizer", first=True)

    def records():
        with open(source, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    record = json.loads(line)
                    yield record["text"], record.get("id", number)

    with open(target, "w", encoding="utf-8") as out:
        for doc, doc_id in nlp.pipe(records(), as_tuples=True, batch_size=256, n_process=int(processes)):
            tokens = [{"text": t.text, "start": t.idx, "end": t.idx + len(t.text), "label": t.tag_}
                      for t in doc if not t.is_space]
            entities = [{"text": e.text, "start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]
            out.write(json.dumps({"id": doc_id, "tokens": tokens, "entities": entities}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(*sys.argv[1:])
