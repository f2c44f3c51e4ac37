"""Document context: documents read from corpora, emission pooling, and decoding with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tagger import Tagger
from tagger.cli import app
from tagger.config import ConfigError, ContextConfig, load_config
from tagger.data.batching import Example
from tagger.data.corpus import document_ids
from tagger.data.readers import load_corpus
from tagger.data.readers.documents import group_documents
from tagger.inference.context import pool_emissions
from tagger.inference.predict import predict
from tagger.inference.runtime import OnnxEncoder, onnx_available
from tagger.model.artifact import ArtifactError, save_model
from tagger.model.directory import load_model
from tagger.model.ensemble import Ensemble, save_ensemble
from tagger.training.card import render_card

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def dev(shared_data):
    """The first 300 Universal NER dev sentences and their documents."""
    sentences = load_corpus(shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2", kind="span").sentences[:300]
    return [s.tokens for s in sentences], document_ids(sentences)


def with_context(model, weight):
    model.config = model.config.with_context(weight=weight)
    return model


def test_documents_come_from_the_newdoc_marks_of_universal_ner(shared_data):
    path = shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2"
    sentences = load_corpus(path, kind="span").sentences
    ids = document_ids(sentences)
    marks = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# newdoc"))
    assert ids[0] == 0 and ids[-1] == marks - 1 == 317
    assert all(b - a in (0, 1) for a, b in zip(ids, ids[1:]))
    assert [i for i, s in enumerate(sentences) if s.newdoc][:2] == [0, ids.index(1)]


def test_documents_come_from_docstart_lines_in_conll2003(write_file):
    path = write_file("c.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\n"
                      "Peter NNP B-NP I-PER\n\n-DOCSTART- -X- -X- O\n\nBonn NNP B-NP I-LOC\n")
    sentences = load_corpus(path, kind="span").sentences
    assert [s.tokens for s in sentences] == [("EU", "rejects"), ("Peter",), ("Bonn",)]
    assert document_ids(sentences) == [0, 0, 1]


def test_a_corpus_without_marks_has_no_documents(write_file):
    sentences = load_corpus(write_file("c.tsv", "Paris\tB-LOC\n\nBonn\tB-LOC\n"), kind="span").sentences
    assert document_ids(sentences) is None


def test_sentences_before_the_first_mark_stand_alone_when_read_and_when_streamed(write_file):
    path = write_file("c.tsv", "# sent_id = a\nParis\tB-LOC\n\nBonn\tB-LOC\n\n# newdoc id = d1\nRome\tB-LOC\n\n"
                      "Oslo\tB-LOC\n\n# newdoc\nLima\tB-LOC\n")
    sentences = load_corpus(path, kind="span").sentences
    assert document_ids(sentences) == [0, 1, 2, 2, 3]
    items = [(i, None, s) for i, s in enumerate(sentences)]
    assert [[i for i, _, _ in run] for run in group_documents(items)] == [[0], [1], [2, 3], [4]]
    assert [[i for i, _, _ in run] for run in group_documents(items, together=False)] == [[0], [1], [2], [3], [4]]
    assert [[i for i, _, _ in run] for run in group_documents(items, max_tokens=1)] == [[0], [1], [2], [3], [4]]
    texts = [(1, "Rome.", None), (2, "Oslo.", None)]
    assert list(group_documents(texts)) == [[texts[0]], [texts[1]]]


def test_pooling_moves_repeated_capitalized_words_toward_their_document_mean():
    sentences = [("Apple", "sued", "apple", "growers"), ("APPLE", "won", "."), ("Apple", "again")]
    documents = [0, 0, 1]
    emissions = [torch.randn(len(s), 5) for s in sentences]
    before = [e.clone() for e in emissions]
    pooled = pool_emissions(sentences, emissions, documents, ContextConfig(weight=0.25))
    mean = (emissions[0][0] + emissions[1][0]) / 2  # Apple and APPLE in document 0; not "apple"
    assert torch.allclose(pooled[0][0], 0.75 * emissions[0][0] + 0.25 * mean)
    assert torch.allclose(pooled[1][0], 0.75 * emissions[1][0] + 0.25 * mean)
    assert torch.equal(pooled[0][1:], emissions[0][1:]) and torch.equal(pooled[1][1:], emissions[1][1:])
    assert torch.equal(pooled[2], emissions[2])  # "Apple" once in document 1
    assert all(torch.equal(a, b) for a, b in zip(emissions, before))  # inputs untouched
    every = pool_emissions(sentences, emissions, documents, ContextConfig(weight=1.0, capitalized_only=False))
    shared = (emissions[0][0] + emissions[0][2] + emissions[1][0]) / 3
    assert all(torch.allclose(row, shared) for row in (every[0][0], every[0][2], every[1][0]))
    off = pool_emissions(sentences, emissions, documents, ContextConfig(weight=0.0))
    assert all(torch.equal(a, b) for a, b in zip(off, emissions))


def by_hand(model, sentences, documents, context):
    """Each sentence's emissions alone, pooled over its document, decoded one by one."""
    with torch.inference_mode():
        rows = []
        for tokens in sentences:
            batch = model.featurizer.batch([Example(tuple(tokens))], with_labels=False)
            rows.append(model.network(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing)["ner"][0])
        pooled = pool_emissions(sentences, rows, documents, context)
        out, marginals = [], []
        for tokens, emission in zip(sentences, pooled):
            tags, probs = model.network.decode({"ner": emission[None]}, torch.ones(1, len(tokens), dtype=torch.bool),
                                               True)["ner"]
            items = model.featurizer.labels["ner"].items
            out.append(model.featurizer.decode_labels("ner", [items[t] for t in tags[0].tolist()]))
            marginals.append(probs[0].tolist())
        return out, rows, pooled, marginals


def labels(model, sentences, **kwargs):
    return [p["ner"].labels for p in predict(model, sentences, scores=False, **kwargs)]


def test_predict_pools_over_documents_then_decodes(tiny_ner_model, dev):
    sentences, documents = dev
    model = with_context(load_model(tiny_ner_model), 1.0)
    got = labels(model, sentences, documents=documents, batch_size=64)  # several padded batches
    expected, rows, pooled, marginals = by_hand(model, sentences, documents, model.config.context)
    assert got == expected
    assert sum(not torch.equal(a, b) for a, b in zip(rows, pooled)) > 20  # the documents repeat names
    scored = predict(model, sentences[:80], documents=documents[:80])
    by_hand_scores = by_hand(model, sentences[:80], documents[:80], model.config.context)[3]
    for prediction, probs in zip(scored, by_hand_scores):
        assert prediction["ner"].scores == pytest.approx(probs, abs=1e-4)  # float32 sums, batched or not
    plain = labels(with_context(load_model(tiny_ner_model), 0.0), sentences)
    assert plain != got
    alone = labels(model, sentences)  # no documents: each sentence is its own
    assert alone == by_hand(model, sentences, list(range(len(sentences))), model.config.context)[0]
    with_empty = [sentences[0], [], *sentences[1:40], []]
    docs_empty = [documents[0], documents[0], *documents[1:40], documents[39]]
    got_empty = labels(model, with_empty, documents=docs_empty)
    assert got_empty[1] == got_empty[-1] == [] and [g for g in got_empty if g] == labels(model, sentences[:40],
                                                                                        documents=documents[:40])


@pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed")
def test_the_onnx_backend_pools_like_torch(tiny_ner_model, dev):
    sentences, documents = dev
    model = with_context(load_model(tiny_ner_model), 1.0)
    assert labels(model, sentences, documents=documents, encoder=OnnxEncoder(model.network)) == labels(
        model, sentences, documents=documents)


def test_tag_tasks_keep_their_scores(dev):
    """The joint model's NER head pools; its POS heads do not."""
    sentences, documents = dev
    plain = predict(load_model(ROOT / "models" / "en-joint"), sentences, documents=documents)
    pooled = predict(with_context(load_model(ROOT / "models" / "en-joint"), 1.0), sentences, documents=documents)
    for task in ("upos", "xpos"):
        assert [p[task] for p in pooled] == [p[task] for p in plain]
    assert [p["ner"].scores for p in pooled] != [p["ner"].scores for p in plain]


def test_the_tagger_takes_each_text_as_one_document(tiny_ner_model, dev):
    sentences, documents = dev
    tagger = Tagger(with_context(load_model(tiny_ner_model), 1.0))
    first = [list(s) for s, d in zip(sentences, documents) if d < 20]
    second = [list(s) for s, d in zip(sentences, documents) if 20 <= d]
    tagged = tagger.tag_documents([first, second], scores=False)
    got = [[t.labels["ner"].value for t in s.tokens] for d in tagged for s in d.sentences]
    assert got == labels(tagger.model, first + second, documents=[0] * len(first) + [1] * len(second))
    assert got != labels(tagger.model, first + second)  # each sentence alone


def test_an_ensemble_keeps_its_own_context(tiny_ner_model, tiny_ner_model_seed2, dev, tmp_path):
    members = [load_model(tiny_ner_model), load_model(tiny_ner_model_seed2)]
    save_ensemble(members, tmp_path / "e", context=ContextConfig(weight=0.5), half=False)
    spec = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    assert spec["context"] == {"weight": 0.5, "capitalized_only": True}
    loaded = load_model(tmp_path / "e")
    assert loaded.config.context.weight == 0.5
    assert [m.config.context.weight for m in loaded.members] == [0.0, 0.0]
    sentences, documents = dev
    assert labels(loaded, sentences, documents=documents) == labels(
        Ensemble(members, context=ContextConfig(weight=0.5)), sentences, documents=documents)
    del spec["context"]  # without one, member 1's applies
    (tmp_path / "e" / "ensemble.json").write_text(json.dumps(spec))
    assert load_model(tmp_path / "e").config.context.weight == 0.0
    save_model(with_context(load_model(tiny_ner_model), 0.25), tmp_path / "e" / "member-1")
    assert load_model(tmp_path / "e").config.context.weight == 0.25
    (tmp_path / "e" / "metrics.json").write_text(json.dumps({"dev": {}, "test": {}}))
    assert "Document context: the span-task scores of a capitalized word" in render_card(tmp_path / "e")
    spec["context"] = {"weight": 1.5}
    (tmp_path / "e" / "ensemble.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match="ensemble.json: invalid.*context.weight"):
        load_model(tmp_path / "e")


def test_the_context_weight_is_validated_and_old_configs_load_without_it():
    assert load_config(overrides={"context.weight": 0.5}).context.weight == 0.5
    with pytest.raises(ConfigError, match="context.weight"):
        load_config(overrides={"context.weight": 1.5})
    with pytest.raises(ValueError, match="weight"):
        load_config().with_context(weight=-0.1)
    config = load_config()
    changed = config.with_context(weight=0.5, capitalized_only=False)
    assert (config.context.weight, changed.context.weight, changed.context.capitalized_only) == (0.0, 0.5, False)
    assert changed.model is not config.model  # a deep copy
    saved = json.loads((ROOT / "models" / "en-pos" / "config.json").read_text())
    assert "context" not in saved  # written before document context existed
    assert load_model(ROOT / "models" / "en-pos").config.context == ContextConfig()


def test_evaluate_reports_the_documents_and_weight(tiny_ner_model, shared_data):
    data = shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2"
    reports = {}
    for weight in ("0", "1"):
        result = runner.invoke(app, ["evaluate", "--model", str(tiny_ner_model), "--data", str(data), "--json",
                                     "--context-weight", weight])
        assert result.exit_code == 0, result.output
        reports[weight] = json.loads(result.stdout)
    assert reports["1"]["documents"] == 318 and reports["1"]["context_weight"] == 1.0
    assert reports["0"]["context_weight"] == 0.0 and reports["0"]["f1"] != reports["1"]["f1"]
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_ner_model), "--data", str(data),
                                 "--context-weight", "1"])
    assert "document context: weight 1, 318 documents" in result.stdout
    bad = runner.invoke(app, ["evaluate", "--model", str(tiny_ner_model), "--data", str(data), "--context-weight", "2"])
    assert bad.exit_code != 0 and "context-weight" in bad.output


def test_a_spacy_pipe_keeps_each_doc_apart(tiny_ner_model, shared_data, tmp_path):
    import spacy

    save_model(with_context(load_model(tiny_ner_model), 1.0), tmp_path / "model")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("bilstm_tagger", config={"model": str(tmp_path / "model"), "batch_size": 8})
    sentences = load_corpus(shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2", kind="span").sentences[:400]
    texts: dict[int, list[str]] = {}
    for sentence, document in zip(sentences, document_ids(sentences)):
        texts.setdefault(document, []).append(sentence.text)
    texts = [" ".join(t) for t in texts.values()]
    docs = list(nlp.pipe(texts))
    tagger = Tagger.load(tmp_path / "model")
    piped = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]
    assert piped == [[(e.start, e.end, e.label) for s in tagger.tag(t).sentences for e in s.entities] for t in texts]
    words = [[[t.text for t in s if not t.is_space] for s in doc.sents] for doc in docs]
    merged = [tagger.tag_tokens([s for doc in words[k:k + 8] for s in doc]) for k in range(0, len(words), 8)]
    separate = [tagger.tag_tokens(doc) for doc in words]
    assert [e.label for d in merged for s in d.sentences for e in s.entities] != \
        [e.label for d in separate for s in d.sentences for e in s.entities]  # pooling across Docs would show


def test_tag_keeps_a_corpus_document_together(tiny_ner_model, shared_data, write_head, tmp_path):
    """``tagger tag`` on a tokenized corpus gives the labels ``evaluate`` scores (documents
    together), and each sentence's record keeps offsets into its own tokens."""
    model = with_context(load_model(tiny_ner_model), 1.0)
    save_model(model, tmp_path / "model")
    data = write_head(shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2", tmp_path / "dev.iob2", 300)
    sentences = load_corpus(data, kind="span").sentences
    expected = labels(model, [s.tokens for s in sentences], documents=document_ids(sentences))
    for fmt in ("conll", "jsonl"):
        out = tmp_path / f"out.{fmt}"
        result = runner.invoke(app, ["tag", "--model", str(tmp_path / "model"), "--input", str(data), "--input-format",
                                     "columns", "--output-format", fmt, "--output", str(out), "--batch", "7"])
        assert result.exit_code == 0, result.output
        if fmt == "conll":
            tagged = [[line.split("\t")[-1] for line in block.splitlines() if not line.startswith("#")]
                      for block in out.read_text(encoding="utf-8").strip().split("\n\n")]
        else:
            records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            tagged = [[t["label"] for t in r["tokens"]] for r in records]
            for record, sentence in zip(records, sentences):
                text = " ".join(sentence.tokens)
                assert [text[t["start"]:t["end"]] for t in record["tokens"]] == list(sentence.tokens)
                assert all(text[e["start"]:e["end"]] == e["text"] for e in record["entities"])
        assert tagged == expected, fmt
    assert expected != labels(model, [s.tokens for s in sentences])
