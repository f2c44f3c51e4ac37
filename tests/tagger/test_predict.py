"""The Tagger facade: offsets that round-trip for any text, entities, scores, batching."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagger import Tagger
from tagger.data.schemes import spans
from tagger.inference.predict import predict

SAMPLES = [
    "",
    "   \n\t  ",
    "Hello  world!\tI live in New York.\n\nNew paragraph here.",
    "Emoji 👩‍👩‍👧‍👦 and flags 🇫🇷🇩🇪 between words.",
    "Combining marks: e\u0301te\u0301, Zalgo: Z\u0351\u0352\u0353a\u0354l\u0355go.",
    "Right to left: שלום עולם. مرحبا بالعالم!",
    "NUL\x00 and control \x07 characters\r\nwith CRLF.",
    "a" * 5000,
]


def assert_offsets(document, text):
    assert document.text == text
    previous_end = 0
    for sentence in document.sentences:
        assert sentence.tokens, "no empty sentences"
        assert text[sentence.start:sentence.end].startswith(sentence.tokens[0].text)
        for token in sentence.tokens:
            assert text[token.start:token.end] == token.text
            assert token.text.strip() == token.text or not token.text.strip() == ""
            assert token.start >= previous_end
            previous_end = token.end
        for entity in sentence.entities:
            assert text[entity.start:entity.end] == entity.text
            assert entity.start == sentence.tokens[entity.token_start].start
            assert entity.end == sentence.tokens[entity.token_end - 1].end


@pytest.fixture(scope="module")
def pos_tagger(tiny_pos_model):
    return Tagger.load(tiny_pos_model)


@pytest.fixture(scope="module")
def ner_tagger(tiny_ner_model):
    return Tagger.load(tiny_ner_model)


@pytest.mark.parametrize("text", SAMPLES)
def test_offsets_round_trip_on_hard_inputs(pos_tagger, text):
    assert_offsets(pos_tagger.tag(text), text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_offsets_round_trip_for_any_text(pos_tagger, text):
    document = pos_tagger.tag(text)
    assert_offsets(document, text)
    tokens = [t for s in document.sentences for t in s.tokens]
    assert all(t.text.strip() for t in tokens), "whitespace never becomes a token"
    assert all(0.0 <= t.labels["upos"].score <= 1.0 + 1e-6 for t in tokens)


def test_multi_megabyte_document(pos_tagger):
    paragraph = "The quick brown fox jumps over the lazy dog near Boston. " * 40 + "\n\n"
    text = paragraph * 1200  # about 2.7 MB
    document = pos_tagger.tag(text, scores=False)
    tokens = [t for s in document.sentences for t in s.tokens]
    assert len(tokens) == 12 * 40 * 1200
    assert all(text[t.start:t.end] == t.text for t in tokens[::997])
    assert tokens[-1].end == len(text) - 3


def test_tag_texts_equals_tag_one_by_one(pos_tagger):
    texts = SAMPLES[2:6]
    batched = pos_tagger.tag_texts(texts)
    for text, document in zip(texts, batched):
        alone = pos_tagger.tag(text)
        assert [[(t.text, t.start, t.end, t.labels["upos"].value) for t in s.tokens] for s in document.sentences] == \
            [[(t.text, t.start, t.end, t.labels["upos"].value) for t in s.tokens] for s in alone.sentences]
        scores = [t.labels["upos"].score for s in document.sentences for t in s.tokens]
        assert scores == pytest.approx([t.labels["upos"].score for s in alone.sentences for t in s.tokens], abs=1e-5)


def test_tag_tokens_offsets_and_labels(pos_tagger, ewt_sentences):
    sentences = [s.tokens for s in ewt_sentences["dev"][:20]] + [()]
    document = pos_tagger.tag_tokens(sentences)
    assert len(document.sentences) == 21
    for sentence, tokens in zip(document.sentences, sentences):
        assert [t.text for t in sentence.tokens] == list(tokens)
        for token in sentence.tokens:
            assert document.text[token.start:token.end] == token.text
    expected = predict(pos_tagger.model, sentences)
    assert [[t.labels["upos"].value for t in s.tokens] for s in document.sentences] == [p["upos"].labels for p in expected]


def test_entities_follow_iob2_labels_with_min_marginal_score(ner_tagger, uner_sentences):
    text = " ".join(" ".join(s.tokens) for s in uner_sentences["dev"][:40])
    document = ner_tagger.tag(text)
    assert_offsets(document, text)
    for sentence in document.sentences:
        labels = [t.labels["ner"].value for t in sentence.tokens]
        found = spans(labels)
        assert [(e.label, e.token_start, e.token_end) for e in sentence.entities] == \
            [(s.label, s.start, s.end) for s in found]
        for entity in sentence.entities:
            token_scores = [t.labels["ner"].score for t in sentence.tokens[entity.token_start:entity.token_end]]
            assert entity.score == pytest.approx(min(token_scores))
    assert ner_tagger.labels["ner"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_batching_does_not_change_results(pos_tagger, ewt_sentences):
    sentences = [s.tokens for s in ewt_sentences["dev"][:64]]
    together = predict(pos_tagger.model, sentences)
    alone = [predict(pos_tagger.model, [s])[0] for s in sentences[:16]]
    for a, b in zip(together, alone):
        assert a["upos"].labels == b["upos"].labels
        assert a["upos"].scores == pytest.approx(b["upos"].scores, abs=1e-4)


def test_one_tokenization_serves_several_calls(pos_tagger):
    texts = SAMPLES[2:6]
    tokenized = pos_tagger.tokenize(texts)
    assert [t.text for t in tokenized] == texts
    assert pos_tagger.tag_documents(tokenized, scores=False) == pos_tagger.tag_documents(texts, scores=False)
    mixed = pos_tagger.tag_documents([tokenized[0], texts[1], [["Pre", "tokenized"]]], scores=False)
    assert mixed[:2] == pos_tagger.tag_documents(texts[:2], scores=False)
    assert [t.text for t in mixed[2].sentences[0].tokens] == ["Pre", "tokenized"]


def test_backends_auto_falls_back_to_torch_and_onnx_does_not(pos_tagger, monkeypatch):
    import tagger.inference.predict as predict_module

    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        Tagger(pos_tagger.model, backend="gpu")

    def broken(network, **options):
        raise RuntimeError("no ONNX Runtime for this CPU")

    monkeypatch.setattr(predict_module, "onnx_available", lambda: True)
    monkeypatch.setattr(predict_module, "OnnxEncoder", broken)
    fallback = Tagger(pos_tagger.model, backend="auto")
    assert fallback.backend == "torch"
    assert fallback.tag("A small test.").to_dict() == pos_tagger.tag("A small test.").to_dict()
    for backend in ("onnx", "onnx-int8"):  # asked for by name: the error, not a fallback
        with pytest.raises(RuntimeError, match="no ONNX Runtime"):
            Tagger(pos_tagger.model, backend=backend)


def test_the_int8_backend_quantizes_every_member_and_tags_like_torch(tiny_pos_model, tiny_ner_model, ewt_sentences,
                                                                   caplog, monkeypatch):
    """int8 replaces the encoder's LSTM and the output layers (of every member) and leaves
    the rest, and on real sentences keeps nearly every label; scores stay probabilities."""
    from tagger.inference.quantize import is_quantized, quantized_network
    from tagger.inference.runtime import onnx_available
    from tagger.model.directory import load_model

    for directory in (tiny_pos_model, tiny_ner_model):
        fp32 = Tagger.load(directory)
        int8 = Tagger(fp32.model, backend="int8")  # a quantized copy: fp32's model stays float
        assert int8.backend == "int8" and fp32.backend == "torch"
        network = int8.model.members[0].network
        assert is_quantized(network) and not is_quantized(fp32.model.members[0].network)
        assert type(network.encoder.rnn).__module__.startswith("torch.ao.nn.quantized.dynamic")
        assert type(network.word_embed) is type(fp32.model.members[0].network.word_embed)  # embeddings untouched
        sentences = [s.tokens for s in ewt_sentences["dev"][:300]]
        a, b = fp32.tag_tokens(sentences), int8.tag_tokens(sentences)
        pairs = [(x.labels[task].value, y.labels[task].value, y.labels[task].score)
                 for s, r in zip(a.sentences, b.sentences) for x, y in zip(s.tokens, r.tokens) for task in fp32.tasks]
        assert sum(x == y for x, y, _ in pairs) / len(pairs) >= 0.98
        assert all(0.0 <= score <= 1.0 for _, _, score in pairs)
        assert not is_quantized(fp32.model.network) and fp32.tag_tokens(sentences) == a  # the original unchanged
    if onnx_available():
        import onnx

        import tagger.inference.runtime as runtime

        quantized = []
        real = runtime.quantize_graph

        def recording(graph):
            quantized.append(graph)
            return real(graph)

        monkeypatch.setattr(runtime, "quantize_graph", recording)
        with caplog.at_level("INFO"):
            both = Tagger.load(tiny_pos_model, backend="onnx-int8")
        assert len(quantized) == 1  # the session runs the quantized graph
        ops = {node.op_type for node in onnx.load_from_string(real(quantized[0])).graph.node}
        assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops
        assert both.backend == "onnx-int8"
        assert not [r for r in caplog.records if "onnxruntime" in r.pathname]  # the quantizer's advice is not ours to print
        tagged = both.tag_tokens([s.tokens for s in ewt_sentences["dev"][:100]])
        assert all(0.0 <= t.labels["upos"].score <= 1.0 for s in tagged.sentences for t in s.tokens)
    training = load_model(tiny_pos_model)
    training.network.train()
    with pytest.raises(ValueError, match="inference only"):
        quantized_network(training.network)


def test_tagging_pauses_the_garbage_collector_only_while_it_runs(pos_tagger):
    import gc

    assert gc.isenabled()
    pos_tagger.tag("The collector comes back on.")
    assert gc.isenabled()
    gc.disable()
    try:
        pos_tagger.tag("A caller who turned it off keeps it off.")
        assert not gc.isenabled()
    finally:
        gc.enable()
