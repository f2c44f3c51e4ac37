"""The network (shapes for every option, padding invariance, learning) and batching
(the featurizer, length buckets), on a few real EWT sentences."""

from __future__ import annotations

import copy
import itertools
import random
from pathlib import Path

import pytest
import torch

from tagger.config import ModelConfig, TaskConfig
from tagger.data.batching import Example, Featurizer, bucketed
from tagger.data.readers import read_conllu
from tagger.data.schemes import convert, labels_for
from tagger.data.vocab import Vocab
from tagger.inference.runtime import OnnxEncoder, onnx_available
from tagger.model.crf import CRF, SoftmaxDecoder
from tagger.model.network import SequenceTagger

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EWT_DEV = DATA / "ud-english-ewt" / "en_ewt-ud-dev.conllu"


# --------------------------------------------------------------------------- fixtures

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sentences():
    """Twenty dev sentences, each with its UPOS and XPOS tags."""
    if not EWT_DEV.is_file():
        pytest.fail(f"expected the EWT corpus at {EWT_DEV}")
    upos = list(itertools.islice(read_conllu(EWT_DEV, "upos"), 20))
    xpos = list(itertools.islice(read_conllu(EWT_DEV, "xpos"), 20))
    assert [s.tokens for s in upos] == [s.tokens for s in xpos]
    return [(u.tokens, u.labels, x.labels) for u, x in zip(upos, xpos)]


@pytest.fixture(scope="module")
def featurizer(sentences):
    words = Vocab(sorted({t.lower() for tokens, _, _ in sentences for t in tokens}))
    chars = Vocab(sorted({c for tokens, _, _ in sentences for t in tokens for c in t}))
    labels = {
        "upos": Vocab(sorted({l for _, u, _ in sentences for l in u}), specials=False),
        "xpos": Vocab(sorted({l for _, _, x in sentences for l in x}), specials=False),
    }
    return Featurizer(words, chars, labels, lowercase=True, max_chars=12)


@pytest.fixture(scope="module")
def examples(sentences):
    """Eight sentences of different lengths, both tasks labelled."""
    chosen = sorted(sentences, key=lambda s: len(s[0]))
    chosen = chosen[:: max(1, len(chosen) // 8)][:8]
    assert len({len(tokens) for tokens, _, _ in chosen}) > 3
    return [Example(tokens, {"upos": u, "xpos": x}) for tokens, u, x in chosen]


def model_config(**changes) -> ModelConfig:
    """A tiny two-task config: UPOS with a CRF, XPOS with a softmax; ``changes`` by dotted key."""
    config = ModelConfig(word_dim=12, tasks=[TaskConfig(name="upos", kind="tag"),
                                             TaskConfig(name="xpos", kind="tag", decoder="softmax")])
    config.char.dim, config.char.hidden, config.encoder.hidden = 6, 5, 7
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition(".")
        setattr(getattr(config, section) if section else config, key, value)
    return config


def network(featurizer, seed: int = 0, **changes) -> SequenceTagger:
    torch.manual_seed(seed)
    labels = {task: len(vocab) for task, vocab in featurizer.labels.items()}
    return SequenceTagger(model_config(**changes), len(featurizer.words), len(featurizer.chars), labels).eval()


def run(model, batch):
    return model(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing)


ALL_OPTIONS = list(itertools.product(["cnn", "lstm", "none"], ["lstm", "gru", "rnn"], ["concat", "average"], [1, 2]))


# --------------------------------------------------------------------------- the network

@pytest.mark.parametrize("char, cell, merge, layers", ALL_OPTIONS)
def test_forward_shapes(featurizer, examples, char, cell, merge, layers):
    model = network(featurizer, **{"char.encoder": char, "encoder.cell": cell, "encoder.merge": merge,
                                    "encoder.layers": layers})
    batch = featurizer.batch(examples)
    emissions = run(model, batch)
    size, width = batch.mask.shape
    assert set(emissions) == {"upos", "xpos"}
    for task, vocab in featurizer.labels.items():
        assert emissions[task].shape == (size, width, len(vocab))
        assert torch.isfinite(emissions[task]).all()
    hidden = 7 * (2 if merge == "concat" else 1)
    assert model.encoder.output_dim == hidden
    assert model.encoder.rnn.num_layers == layers and model.encoder.rnn.bidirectional
    assert type(model.encoder.rnn).__name__ == {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell]
    assert (model.chars is None) == (char == "none")
    if char != "none":
        assert model.chars.output_dim == (5 if char == "cnn" else 10)
        assert model.chars(batch.chars).shape == (batch.chars.size(0), model.chars.output_dim)
    assert isinstance(model.decoders["upos"], CRF) and isinstance(model.decoders["xpos"], SoftmaxDecoder)
    decoded = model.decode(emissions, batch.mask)
    for task in ("upos", "xpos"):
        tags, probs = decoded[task]
        assert tags.shape == probs.shape == (size, width)
        assert tags[~batch.mask].eq(0).all() and probs[~batch.mask].eq(0).all()
        assert ((probs[batch.mask] > 0) & (probs[batch.mask] <= 1 + 1e-6)).all()
    loss = model.loss(emissions, batch.tags, batch.has_tags, batch.mask)
    assert loss.shape == () and torch.isfinite(loss) and loss.item() > 0


needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed")


@needs_onnx
@pytest.mark.parametrize("cell, merge, layers", list(itertools.product(["lstm", "gru", "rnn"], ["concat", "average"], [1, 2])))
def test_the_onnx_encoder_gives_the_torch_emissions(featurizer, examples, cell, merge, layers):
    model = network(featurizer, seed=3, **{"encoder.cell": cell, "encoder.merge": merge, "encoder.layers": layers})
    batch = featurizer.batch(examples)  # ragged: both directions must stop at each row's end
    expected = run(model, batch)
    with torch.inference_mode():
        features = model.features(batch.words, batch.chars, batch.char_index, batch.casing)
        got = OnnxEncoder(model, features=False)(features, batch.mask.sum(1))
    assert set(got) == set(expected)
    for task in expected:
        assert got[task].shape == expected[task].shape
        torch.testing.assert_close(got[task][batch.mask], expected[task][batch.mask], atol=1e-5, rtol=1e-4)


@needs_onnx
@pytest.mark.parametrize("char, kernel, casing", [("cnn", 3, 0), ("cnn", 4, 4), ("none", 3, 4), ("lstm", 3, 0)])
def test_the_onnx_graph_computes_the_features_too(featurizer, examples, char, kernel, casing):
    """Word, character (CNN, any window) and casing features in the graph, from the ids: the
    torch emissions, padding rows and characters included; a character BiLSTM stays in torch."""
    model = network(featurizer, seed=5, **{"char.encoder": char, "char.kernel": kernel, "casing_dim": casing})
    featurizer = copy.copy(featurizer)  # the fixture's, with casing classes when the model reads them
    featurizer.casing = bool(casing)
    batch = featurizer.batch(examples)
    expected = run(model, batch)
    encoder = OnnxEncoder(model)
    assert encoder.features == (char != "lstm")
    with torch.inference_mode():
        if encoder.features:
            got = encoder.emissions(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing)
            with pytest.raises(ValueError, match="emissions"):
                encoder(model.features(batch.words, batch.chars, batch.char_index, batch.casing), batch.mask.sum(1))
        else:
            got = encoder(model.features(batch.words, batch.chars, batch.char_index, batch.casing), batch.mask.sum(1))
    for task in expected:
        torch.testing.assert_close(got[task][batch.mask], expected[task][batch.mask], atol=1e-5, rtol=1e-4)


@needs_onnx
def test_the_onnx_encoder_refuses_a_cell_it_cannot_express(featurizer):
    model = network(featurizer)
    model.encoder.rnn.mode = "RNN_RELU"
    with pytest.raises(ValueError, match="no RNN_RELU cell"):
        OnnxEncoder(model)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_average_merge_is_the_mean_of_the_two_directions(featurizer, examples, cell):
    """Same seed, same recurrent weights: averaging halves what concatenation returns."""
    concat = network(featurizer, seed=3, **{"encoder.cell": cell, "encoder.merge": "concat"})
    average = network(featurizer, seed=3, **{"encoder.cell": cell, "encoder.merge": "average"})
    assert torch.equal(concat.encoder.rnn.weight_hh_l0_reverse, average.encoder.rnn.weight_hh_l0_reverse)
    batch = featurizer.batch(examples)
    inputs = torch.randn(*batch.words.shape, concat.encoder.rnn.input_size)
    both = concat.encoder(inputs, batch.mask)
    forward, backward = both.chunk(2, dim=2)
    assert not torch.allclose(forward, backward)
    torch.testing.assert_close(average.encoder(inputs, batch.mask), (forward + backward) / 2)
    assert both[~batch.mask].eq(0).all(), "zeros at padding"


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_char_cnn_any_kernel(featurizer, examples, kernel):
    model = network(featurizer, **{"char.kernel": kernel})
    batch = featurizer.batch(examples)
    assert model.chars(batch.chars).shape == (batch.chars.size(0), 5)
    # Inference computes the convolution as a matrix product over windows: the same numbers.
    model.chars.train()
    with torch.no_grad():
        trained_path = model.chars(batch.chars)
        model.chars.eval()
        torch.testing.assert_close(model.chars(batch.chars), trained_path, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("char, cell, merge, layers, kernel", [
    ("cnn", "lstm", "concat", 1, 3),
    ("cnn", "lstm", "concat", 1, 4),
    ("cnn", "gru", "average", 2, 3),
    ("cnn", "gru", "average", 2, 4),
    ("cnn", "lstm", "average", 2, 3),
    ("cnn", "rnn", "concat", 1, 2),
    ("lstm", "lstm", "concat", 2, 3),
    ("lstm", "rnn", "average", 1, 3),
    ("none", "gru", "concat", 1, 3),
    ("none", "rnn", "concat", 2, 3),
])
def test_padding_does_not_change_a_sentence(featurizer, examples, char, cell, merge, layers, kernel):
    """A sentence alone and the same sentence padded beside a longer one (whose longer
    words also widen the character matrix) get the same emissions, tags and scores."""
    model = network(featurizer, **{"char.encoder": char, "encoder.cell": cell, "encoder.merge": merge,
                                    "encoder.layers": layers, "char.kernel": kernel})
    long = max(examples, key=lambda e: len(e.tokens))
    for short in examples:
        if len(short.tokens) == len(long.tokens):
            continue
        alone = featurizer.batch([short])
        padded = featurizer.batch([long, short, long])
        assert padded.chars.size(1) >= alone.chars.size(1)
        n = len(short.tokens)
        a, b = run(model, alone), run(model, padded)
        for task in ("upos", "xpos"):
            torch.testing.assert_close(b[task][1, :n], a[task][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(b[task][0], b[task][2])
        da, db = model.decode(a, alone.mask), model.decode(b, padded.mask)
        for task in ("upos", "xpos"):
            assert db[task][0][1, :n].tolist() == da[task][0][0].tolist()
            torch.testing.assert_close(db[task][1][1, :n], da[task][1][0], atol=1e-5, rtol=1e-5)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(featurizer, examples):
    model = network(featurizer, dropout=0.5)
    batch = featurizer.batch(examples)
    torch.testing.assert_close(run(model, batch)["upos"], run(model, batch)["upos"], atol=0, rtol=0)
    model.train()
    torch.manual_seed(1)
    first = run(model, batch)["upos"]
    torch.manual_seed(2)
    assert not torch.equal(first, run(model, batch)["upos"])


@pytest.mark.parametrize("char", ["cnn", "lstm"])
def test_a_few_adam_steps_reduce_the_loss(featurizer, examples, char):
    model = network(featurizer, seed=0, dropout=0.0, **{"char.encoder": char}).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    batch = featurizer.batch(examples[:4])
    losses = []
    for _ in range(25):
        loss = model.loss(run(model, batch), batch.tags, batch.has_tags, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.decoders["upos"].transitions.grad is not None  # the CRF itself learns


def test_loss_skips_rows_without_a_task(featurizer, examples):
    """A sentence unlabelled for a task contributes nothing to that task's loss."""
    model = network(featurizer)
    partial = [examples[0], Example(examples[1].tokens, {"upos": examples[1].labels["upos"]})]
    batch = featurizer.batch(partial)
    assert batch.has_tags["xpos"].tolist() == [True, False]
    emissions = run(model, batch)
    total = model.loss(emissions, batch.tags, batch.has_tags, batch.mask)
    # Garbage tags in the unlabelled row change nothing.
    tags = {k: v.clone() for k, v in batch.tags.items()}
    tags["xpos"][1] = torch.randint(len(featurizer.labels["xpos"]), tags["xpos"][1].shape)
    assert model.loss(emissions, tags, batch.has_tags, batch.mask).item() == pytest.approx(total.item())
    only_upos = model.loss(emissions, {"upos": batch.tags["upos"]}, batch.has_tags, batch.mask)
    assert only_upos.item() < total.item()


# --------------------------------------------------------------------------- the featurizer

def test_featurizer_builds_distinct_form_char_rows_masks_and_tags(featurizer):
    first = Example(("The", "the", "Zyzzyva", "the", "."), {"upos": ("DET", "DET", "NOUN", "DET", "PUNCT")})
    second = Example(("the", "The"), {"xpos": ("DT", "DT")})
    batch = featurizer.batch([first, second])

    assert batch.mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert batch.words.shape == batch.char_index.shape == (2, 5)
    the = featurizer.words.id("the")
    assert batch.words[0].tolist() == [the, the, 1, the, featurizer.words.id(".")]  # lowercased; 1 = unknown
    assert batch.words[1].tolist() == [the, the, 0, 0, 0]  # 0 = padding

    # One char row per distinct surface form (case kept), in order of first appearance.
    forms = ["The", "the", "Zyzzyva", "."]
    assert batch.chars.size(0) == len(forms)
    assert batch.char_index[0].tolist() == [0, 1, 2, 1, 3]
    assert batch.char_index[1, :2].tolist() == [1, 0]
    assert batch.chars.size(1) == max(map(len, forms))
    for row, form in enumerate(forms):
        ids = featurizer.chars.ids(form)
        assert batch.chars[row, : len(ids)].tolist() == ids
        assert batch.chars[row, len(ids):].eq(0).all()
    assert featurizer.chars.items[batch.chars[0, 0]] == "T"

    # Tags per task, with the rows that carry them.
    assert set(batch.tags) == {"upos", "xpos"}
    assert batch.has_tags["upos"].tolist() == [True, False]
    assert batch.has_tags["xpos"].tolist() == [False, True]
    upos = featurizer.labels["upos"]
    assert [upos.items[i] for i in batch.tags["upos"][0].tolist()] == list(first.labels["upos"])
    assert batch.tags["upos"][1].eq(0).all()
    xpos = featurizer.labels["xpos"]
    assert [xpos.items[i] for i in batch.tags["xpos"][1, :2].tolist()] == ["DT", "DT"]

    unlabelled = featurizer.batch([first, second], with_labels=False)
    assert unlabelled.tags == {} and unlabelled.has_tags == {}
    assert torch.equal(unlabelled.words, batch.words) and torch.equal(unlabelled.chars, batch.chars)


def test_featurizer_on_real_sentences(featurizer, examples):
    batch = featurizer.batch(examples)
    lengths = [len(e.tokens) for e in examples]
    assert batch.mask.sum(1).tolist() == lengths
    forms = list(dict.fromkeys(t for e in examples for t in e.tokens))
    assert batch.chars.size(0) == len(forms)
    for row, example in enumerate(examples):
        for t, token in enumerate(example.tokens):
            assert forms[batch.char_index[row, t]] == token
            assert featurizer.words.items[batch.words[row, t]] == token.lower()
        for task in ("upos", "xpos"):
            vocab = featurizer.labels[task]
            assert [vocab.items[i] for i in batch.tags[task][row, : lengths[row]]] == list(example.labels[task])


def test_long_words_keep_prefix_and_suffix(featurizer):
    word = "Internationalisation"  # 20 characters, 12 kept: 6 + 6
    batch = featurizer.batch([Example((word, "a"))], with_labels=False)
    assert batch.chars.size(1) == 12
    kept = "".join(featurizer.chars.items[i] for i in batch.chars[0].tolist())
    assert kept == word[:6] + word[-6:]


def test_span_task_labels_are_encoded_in_iobes():
    words, chars = Vocab(["john", "lives", "in", "new", "york"]), Vocab(sorted(set("johnlivesnwyrk")))
    labels = {"ner": Vocab(labels_for(["LOC", "PER"], "iobes"), specials=False)}
    featurizer = Featurizer(words, chars, labels, lowercase=True, max_chars=10, encodings={"ner": "iobes"})
    iob2 = ("B-PER", "O", "O", "B-LOC", "I-LOC")
    batch = featurizer.batch([Example(("John", "lives", "in", "New", "York"), {"ner": iob2})])
    encoded = [labels["ner"].items[i] for i in batch.tags["ner"][0].tolist()]
    assert encoded == ["S-PER", "O", "O", "B-LOC", "E-LOC"] == convert(iob2, "iob2", "iobes")
    assert featurizer.decode_labels("ner", encoded) == list(iob2)


# --------------------------------------------------------------------------- bucketing

def random_lengths(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 40) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batch_size, max_tokens", [(1, None), (4, None), (16, None), (32, 100), (8, 50),
                                                    (100, 25), (5, 1)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_bucketed(seed, batch_size, max_tokens, shuffle):
    lengths = random_lengths(seed, 97)
    batches = list(bucketed(lengths, batch_size, random.Random(seed) if shuffle else None, max_tokens))
    # Every index exactly once.
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(batches)
    # Limits: sentences per batch, and padded tokens unless a single sentence is already over.
    assert all(len(b) <= batch_size for b in batches)
    if max_tokens:
        for b in batches:
            assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= max_tokens
    # Buckets: the length ranges of two batches never interleave.
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    # Deterministic for a given seed (or without shuffling).
    again = list(bucketed(lengths, batch_size, random.Random(seed) if shuffle else None, max_tokens))
    assert again == batches


def test_bucketed_shuffles_with_the_seed():
    lengths = random_lengths(0, 200)
    seven = list(bucketed(lengths, 8, random.Random(7)))
    assert seven == list(bucketed(lengths, 8, random.Random(7)))
    assert seven != list(bucketed(lengths, 8, random.Random(8)))
    unshuffled = list(bucketed(lengths, 8))
    assert [lengths[b[0]] for b in unshuffled] == sorted(lengths[b[0]] for b in unshuffled)
    # With a seed the batches themselves come in random order, not shortest first.
    assert [lengths[b[0]] for b in seven] != sorted(lengths[b[0]] for b in seven)


def test_bucketed_fills_batches():
    """Without a token limit, every batch but one is full."""
    lengths = random_lengths(3, 50)
    batches = list(bucketed(lengths, 8, random.Random(0)))
    assert sorted(map(len, batches)) == [2] + [8] * 6
    assert list(bucketed([], 4, random.Random(0))) == []


# --------------------------------------------------------------------------- casing feature

@pytest.mark.parametrize("token, expected", [
    ("1999", "numeric"), ("3.5", "mainly_numeric"), ("12-14", "mainly_numeric"), ("the", "lower"),
    ("NASA", "upper"), ("Paris", "title"), ("I", "upper"), ("iPhone", "mixed"), ("McDonald", "mixed"),
    ("A4", "upper"), ("#1", "has_digit"), ("b2b", "lower"), (",", "other"), ("--", "other"), ("😀", "other"),
])
def test_casing_classes(token, expected):
    from tagger.data.batching import CASINGS, casing

    assert CASINGS[casing(token)] == expected


def test_casing_feature_changes_emissions_by_case_alone(featurizer, sentences):
    """Lower-cased words and characters aside, only the casing embedding tells 'Paris' from 'paris'."""
    model = network(featurizer, casing_dim=4, **{"char.encoder": "none"})
    assert model.casing is not None and model.casing.embedding_dim == 4
    assert featurizer.batch([Example(("Paris",))], with_labels=False).casing is None  # computed only when used
    cased = Featurizer(featurizer.words, featurizer.chars, featurizer.labels, lowercase=True, max_chars=12, casing=True)
    upper, lower = (cased.batch([Example((w, "visited"))], with_labels=False) for w in ("Paris", "paris"))
    assert upper.casing.tolist() != lower.casing.tolist()
    assert torch.equal(upper.words, lower.words)
    assert not torch.allclose(run(model, upper)["upos"], run(model, lower)["upos"])
    with pytest.raises(ValueError, match="casing"):
        model(upper.words, upper.chars, upper.char_index, upper.mask)
    plain = network(featurizer, **{"char.encoder": "none"})
    assert plain.casing is None
    assert torch.allclose(run(plain, upper)["upos"], run(plain, lower)["upos"])
