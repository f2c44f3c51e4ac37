"""The spaCy component, found through the spacy_factories entry point."""

from __future__ import annotations

import spacy

from tagger import Tagger


def test_component_sets_pos_and_ents_like_the_tagger(tiny_pos_model, tiny_ner_model):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("bilstm_tagger", name="pos", config={"model": str(tiny_pos_model)})
    nlp.add_pipe("bilstm_tagger", name="ner", config={"model": str(tiny_ner_model)})
    text = "Barack Obama visited  Paris last week.\n\nThen he flew to Berlin with Angela Merkel."
    docs = list(nlp.pipe([text, "", "One more sentence about London."]))
    doc = docs[0]
    expected = Tagger.load(tiny_pos_model).tag(text)
    tokens = [t for t in doc if not t.is_space]
    assert [t.pos_ for t in tokens] == [t.labels["upos"].value for s in expected.sentences for t in s.tokens]
    assert [t.text for t in tokens] == [t.text for s in expected.sentences for t in s.tokens]
    ner = Tagger.load(tiny_ner_model).tag(text)
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == \
        [(e.start, e.end, e.label) for s in ner.sentences for e in s.entities]
    assert len(docs[1]) == 0
    assert all(t.pos_ for t in docs[2])


def test_component_runs_on_the_backend_its_config_names(tiny_pos_model):
    import pytest

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    component = nlp.add_pipe("bilstm_tagger", config={"model": str(tiny_pos_model), "backend": "int8"})
    assert component.tagger.backend == "int8"
    text = "The quick brown fox jumps over the lazy dog."
    doc = nlp(text)
    expected = Tagger.load(tiny_pos_model, "int8").tag(text)
    assert [t.pos_ for t in doc] == [t.labels["upos"].value for s in expected.sentences for t in s.tokens]
    with pytest.raises(ValueError, match="unknown backend"):
        spacy.blank("en").add_pipe("bilstm_tagger", config={"model": str(tiny_pos_model), "backend": "gpu"})
