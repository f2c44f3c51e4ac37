"""Build spaCy's own CPU efficiency pipelines (tagger; tagger+ner) on EWT for the benchmark.

spaCy's `init config --optimize efficiency` recipe, trained briefly on the same corpora
(UPOS in `token.tag_`, Universal NER entities): its tagging speed does not depend on how
long it trained. The pipelines are cached under runs/spacy-*/model-last.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _docbin(nlp, split: str, with_ner: bool):
    from spacy.tokens import Doc, DocBin, Span

    from tagger.data.align import align
    from tagger.data.readers import load_corpus, read_conllu

    pos = list(read_conllu(DATA / "ud-english-ewt" / f"en_ewt-ud-{split}.conllu", "upos"))
    corpora = {"upos": pos}
    if with_ner:
        corpora["ner"] = load_corpus(DATA / "uner-english-ewt" / f"en_ewt-ud-{split}.iob2").sentences
    docs = DocBin()
    from tagger.data.schemes import spans

    for example in align(corpora).examples:
        if "upos" not in example.labels or (with_ner and "ner" not in example.labels):
            continue
        doc = Doc(nlp.vocab, words=list(example.tokens), tags=list(example.labels["upos"]))
        if with_ner:
            doc.ents = [Span(doc, s.start, s.end, label=s.label) for s in spans(example.labels["ner"])]
        docs.add(doc)
    return docs


def build(name: str, pipeline: list[str], steps: int = 400) -> Path:
    """Train (once) and return the path of a spaCy pipeline."""
    import spacy
    from spacy.cli.init_config import init_config
    from spacy.cli.train import train

    work = ROOT / "runs" / f"spacy-{name}"
    model = work / "model-last"
    if (model / "config.cfg").exists():
        return model
    work.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("en")
    with_ner = "ner" in pipeline
    for split in ("train", "dev"):
        _docbin(nlp, split, with_ner).to_disk(work / f"{split}.spacy")
    config = init_config(lang="en", pipeline=pipeline, optimize="efficiency", gpu=False)
    config.to_disk(work / "config.cfg")
    print(f"training spaCy's efficiency {'+'.join(pipeline)} for {steps} steps ...", file=sys.stderr)
    train(work / "config.cfg", work, overrides={
        "paths.train": str(work / "train.spacy"), "paths.dev": str(work / "dev.spacy"),
        "training.max_steps": steps, "training.eval_frequency": steps, "training.max_epochs": 0})
    return model


if __name__ == "__main__":
    print(build("tagger", ["tagger"]))
    print(build("tagger-ner", ["tagger", "ner"]))
