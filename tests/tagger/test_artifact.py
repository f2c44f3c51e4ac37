"""Model directories: the round trip (fp32 and fp16), and refusal of every missing,
corrupt, truncated, inconsistent or crafted artifact, without ever unpickling."""

from __future__ import annotations

import builtins
import itertools
import json
import pickle
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tagger.model.artifact import ArtifactError, Model, build_model, save_model

from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.readers import read_conllu
from tagger.data.schemes import labels_for
from tagger.data.vocab import Vocab
from tagger.model.crf import CRF
from tagger.model.directory import load_model

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EWT_DEV = DATA / "ud-english-ewt" / "en_ewt-ud-dev.conllu"
NER_LABELS = labels_for(["LOC", "ORG", "PER"], "iobes")


# --------------------------------------------------------------------------- fixtures

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sentences():
    if not EWT_DEV.is_file():
        pytest.fail(f"expected the EWT corpus at {EWT_DEV}")
    return list(itertools.islice(read_conllu(EWT_DEV), 12))


def tiny_config(**encoder) -> TaggerConfig:
    """UPOS (CRF) and NER (constrained IOBES CRF): two heads, two CRFs, tiny dimensions."""
    config = TaggerConfig()
    config.model.tasks = [TaskConfig(name="upos", kind="tag"), TaskConfig(name="ner", kind="span")]
    config.model.word_dim, config.model.char.dim, config.model.char.hidden = 10, 6, 5
    config.model.encoder.hidden = 8
    for key, value in encoder.items():
        setattr(config.model.encoder, key, value)
    return config


def make_model(sentences, seed: int = 0, config: TaggerConfig | None = None) -> Model:
    torch.manual_seed(seed)
    words = Vocab(sorted({t.lower() for s in sentences for t in s.tokens}))
    chars = Vocab(sorted({c for s in sentences for t in s.tokens for c in t}))
    labels = {"upos": Vocab(sorted({l for s in sentences for l in s.labels}), specials=False),
              "ner": Vocab(NER_LABELS, specials=False)}
    model = build_model(config or tiny_config(), words, chars, labels)
    with torch.no_grad():  # CRF parameters start near zero: make them matter
        for decoder in model.network.decoders.values():
            decoder.transitions.normal_()
            decoder.start.normal_()
            decoder.end.normal_()
    model.network.eval()
    return model


@pytest.fixture()
def model(sentences):
    return make_model(sentences)


@pytest.fixture()
def model_dir(model, tmp_path):
    directory = tmp_path / "model"
    save_model(model, directory)
    return directory


def emissions(model: Model, token_lists):
    batch = model.featurizer.batch([Example(tuple(tokens)) for tokens in token_lists], with_labels=False)
    with torch.no_grad():
        return model.network(batch.words, batch.chars, batch.char_index, batch.mask, batch.casing), batch.mask


# --------------------------------------------------------------------------- round trip

def test_directory_layout(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "labels.json", "vocab.json",
                                                           "weights.safetensors"]
    assert json.loads((model_dir / "labels.json").read_text())["ner"] == NER_LABELS
    # The weights are plain safetensors: readable without the tagger, no pickle inside.
    assert set(load_file(str(model_dir / "weights.safetensors"))) == set(load_model(model_dir).network.state_dict())


def test_round_trip_gives_identical_emissions(model, model_dir, sentences):
    loaded = load_model(model_dir)
    assert not loaded.network.training
    assert loaded.config == model.config
    assert loaded.featurizer.words.items == model.featurizer.words.items
    assert loaded.featurizer.chars.items == model.featurizer.chars.items
    assert {t: v.items for t, v in loaded.featurizer.labels.items()} == {t: v.items for t, v in model.featurizer.labels.items()}
    assert loaded.featurizer.encodings == model.featurizer.encodings == {"ner": "iobes"}
    for name, tensor in model.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], tensor), name
    # The constraints are not saved but rebuilt from the labels.
    crf = loaded.network.decoders["ner"]
    assert isinstance(crf, CRF) and not crf.trans_ok.all()
    assert torch.equal(crf.trans_ok, model.network.decoders["ner"].trans_ok)

    token_lists = [s.tokens for s in sentences] + [["Zyzzyva", "unseen", "WORDS"]]
    before, mask = emissions(model, token_lists)
    after, _ = emissions(loaded, token_lists)
    for task in ("upos", "ner"):
        assert torch.equal(before[task], after[task]), task
    decoded_before, decoded_after = model.network.decode(before, mask), loaded.network.decode(after, mask)
    for task in ("upos", "ner"):
        assert torch.equal(decoded_before[task][0], decoded_after[task][0])
        assert torch.equal(decoded_before[task][1], decoded_after[task][1])


def test_round_trip_is_stable(model_dir, tmp_path):
    """Saving a loaded model again writes the same bytes."""
    save_model(load_model(model_dir), tmp_path / "again")
    for name in ("weights.safetensors", "config.json", "vocab.json", "labels.json"):
        assert (tmp_path / "again" / name).read_bytes() == (model_dir / name).read_bytes(), name


def test_half_precision_weights(model, model_dir, tmp_path, sentences):
    half_dir = tmp_path / "half"
    save_model(model, half_dir, half=True, metrics={"accuracy": 0.5})
    assert json.loads((half_dir / "metrics.json").read_text()) == {"accuracy": 0.5}
    stored = load_file(str(half_dir / "weights.safetensors"))
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    size, full_size = (half_dir / "weights.safetensors").stat().st_size, (model_dir / "weights.safetensors").stat().st_size
    assert size < 0.6 * full_size
    half = load_model(half_dir)
    for name, tensor in half.network.state_dict().items():
        # computed in fp32 after loading; the word table stays fp16 (rows widened when looked up)
        assert tensor.dtype == (torch.float16 if name == "word_embed.weight" else torch.float32), name
        torch.testing.assert_close(tensor.float(), model.network.state_dict()[name], atol=1e-3, rtol=1e-3)
    token_lists = [s.tokens for s in sentences]
    full, mask = emissions(model, token_lists)
    approx, _ = emissions(half, token_lists)
    for task in ("upos", "ner"):
        torch.testing.assert_close(approx[task], full[task], atol=2e-2, rtol=1e-2)
    tags_full, tags_half = model.network.decode(full, mask), half.network.decode(approx, mask)
    agree = (tags_full["upos"][0] == tags_half["upos"][0])[mask].float().mean().item()
    assert agree > 0.95


def test_an_fp16_word_table_kept_in_memory_computes_what_fp32_would(model, tmp_path, sentences):
    """The fp16 table a half model loads with gives the emissions of the same values in fp32,
    bit for bit; saved again in fp32 (the default) it is fp32 on disk and in memory."""
    save_model(model, tmp_path / "half", half=True)
    half = load_model(tmp_path / "half")
    save_model(half, tmp_path / "full")
    assert load_file(str(tmp_path / "full" / "weights.safetensors"))["word_embed.weight"].dtype == torch.float32
    full = load_model(tmp_path / "full")
    assert full.network.word_embed.weight.dtype == torch.float32
    assert half.network.word_embed.weight.element_size() * 2 == full.network.word_embed.weight.element_size()
    token_lists = [s.tokens for s in sentences] + [["Zyzzyva", "unseen", "WORDS"]]
    (a, mask), (b, _) = emissions(half, token_lists), emissions(full, token_lists)
    for task in ("upos", "ner"):
        assert torch.equal(a[task], b[task]), task


def test_models_with_the_same_vocabulary_file_share_it(model, model_dir, tmp_path):
    """An ensemble's members, or models trained on one corpus, hold one vocabulary in memory;
    a file that differs in one word gets its own, and nothing is kept once no model holds it."""
    import gc
    import hashlib

    from tagger.model import artifact

    first, second = load_model(model_dir), load_model(model_dir)
    assert first.featurizer.words is second.featurizer.words and first.featurizer.chars is second.featurizer.chars
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    rewrite_json(other / VOCAB, lambda v: v["words"].__setitem__(-1, "zyzzyva"))
    third = load_model(other)
    assert third.featurizer.words is not first.featurizer.words
    assert third.featurizer.words.items[-1] == "zyzzyva" != first.featurizer.words.items[-1]
    assert third.featurizer.words.id("zyzzyva") == len(third.featurizer.words) - 1
    assert first.featurizer.words.id("zyzzyva") == 1  # unknown: the shared vocabulary was not changed
    digests = {hashlib.blake2b((d / VOCAB).read_bytes(), digest_size=16).hexdigest() for d in (model_dir, other)}
    assert {digest for digest, _ in artifact._VOCABULARIES.keys()} >= digests
    del first, second, third
    gc.collect()
    assert not {digest for digest, _ in artifact._VOCABULARIES.keys()} & digests  # other tests' models may remain


def test_pruning_keeps_the_first_word_rows(model, sentences, tmp_path):
    from tagger.model.artifact import prune_words

    words = model.featurizer.words
    keep = len(words) // 2
    pruned = prune_words(model, keep)
    assert pruned.featurizer.words.items == words.items[:keep]
    table, before = pruned.network.word_embed.weight, model.network.word_embed.weight
    assert table.shape == (keep, before.shape[1]) and torch.equal(table, before[:keep])
    for name, tensor in model.network.state_dict().items():
        if name != "word_embed.weight":
            assert torch.equal(pruned.network.state_dict()[name], tensor), name
    kept, dropped = words.items[keep - 1], words.items[keep]
    assert pruned.featurizer.words.id(kept) == keep - 1 and pruned.featurizer.words.id(dropped) == 1
    # Sentences of kept words only: the same emissions; a dropped word is the unknown word.
    known = [[t for t in s.tokens if words.id(t.lower()) < keep] for s in sentences]
    known = [tokens for tokens in known if tokens]
    (a, _), (b, _) = emissions(model, known), emissions(pruned, known)
    for task in ("upos", "ner"):
        assert torch.equal(a[task], b[task]), task
    batch = pruned.featurizer.batch([Example((dropped, kept))], with_labels=False)
    assert batch.words.tolist() == [[1, keep - 1]]
    # Saved and loaded like any model; pruning no further than the table returns the model itself.
    save_model(pruned, tmp_path / "pruned", half=True)
    assert len(load_model(tmp_path / "pruned").featurizer.words) == keep
    assert prune_words(model, len(words)) is model
    with pytest.raises(ValueError, match="at least 2"):
        prune_words(model, 1)


# --------------------------------------------------------------------------- refusals

WEIGHTS, CONFIG, LABELS, VOCAB = "weights.safetensors", "config.json", "labels.json", "vocab.json"


def rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def resave_state(directory: Path, change) -> None:
    state = {k: v.clone().contiguous() for k, v in load_model(directory).network.state_dict().items()}
    change(state)
    save_file(state, str(directory / WEIGHTS))


def other_weights(directory: Path, sentences, **encoder) -> None:
    """Replace the weights by those of a model built from a different config."""
    other = directory.parent / "other"
    save_model(make_model(sentences, config=tiny_config(**encoder)), other)
    shutil.copyfile(other / WEIGHTS, directory / WEIGHTS)


def cut(directory: Path, keep) -> None:
    weights = directory / WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(data[: keep(len(data))])


def header_size(directory: Path) -> int:
    return int.from_bytes((directory / WEIGHTS).read_bytes()[:8], "little")


def set_nan(state):
    state["heads.upos.bias"][1] = float("nan")


def set_inf(state):
    state["encoder.rnn.weight_hh_l0"][0, 0] = float("-inf")


CORRUPTIONS = {
    # the directory itself
    "missing directory": (lambda d, s: shutil.rmtree(d), "", "not a model directory"),
    "a file, not a directory": (lambda d, s: (shutil.rmtree(d), d.write_text("x")), "", "not a model directory"),
    # weights.safetensors
    "missing weights": (lambda d, s: (d / WEIGHTS).unlink(), WEIGHTS, "missing"),
    "empty weights": (lambda d, s: cut(d, lambda n: 0), WEIGHTS, "corrupt or truncated"),
    "weights cut inside the length prefix": (lambda d, s: cut(d, lambda n: 5), WEIGHTS, "corrupt or truncated"),
    "weights cut after the length prefix": (lambda d, s: cut(d, lambda n: 8), WEIGHTS, "corrupt or truncated"),
    "weights cut inside the header": (lambda d, s: cut(d, lambda n: 8 + header_size(d) // 2), WEIGHTS,
                                      "corrupt or truncated"),
    "weights cut after the header": (lambda d, s: cut(d, lambda n: 8 + header_size(d)), WEIGHTS,
                                     "corrupt or truncated"),
    "weights cut in half": (lambda d, s: cut(d, lambda n: n // 2), WEIGHTS, "corrupt or truncated"),
    "weights missing the last byte": (lambda d, s: cut(d, lambda n: n - 1), WEIGHTS, "corrupt or truncated"),
    "garbage weights": (lambda d, s: (d / WEIGHTS).write_bytes(random.Random(0).randbytes(5000)), WEIGHTS,
                        "corrupt or truncated"),
    "garbage with a plausible length": (lambda d, s: (d / WEIGHTS).write_bytes(
        (40).to_bytes(8, "little") + b"\x00garbage, not a JSON header at all!!!\xff" + b"\x00" * 100), WEIGHTS,
        "corrupt or truncated"),
    "header that lies about offsets": (lambda d, s: (d / WEIGHTS).write_bytes(
        _header({"heads.upos.bias": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}) + b"\x00" * 16),
        WEIGHTS, "corrupt or truncated"),
    "weights are a directory": (lambda d, s: ((d / WEIGHTS).unlink(), (d / WEIGHTS).mkdir()), WEIGHTS,
                                "corrupt or truncated"),
    "weights of a wider encoder": (lambda d, s: other_weights(d, s, hidden=9), WEIGHTS, "has shape"),
    "weights of a deeper encoder": (lambda d, s: other_weights(d, s, layers=2), WEIGHTS, "do not match the config"),
    "weights of a GRU": (lambda d, s: other_weights(d, s, cell="gru"), WEIGHTS, "has shape"),
    "missing tensor": (lambda d, s: resave_state(d, lambda st: st.pop("decoders.ner.transitions")), WEIGHTS,
                       "missing ['decoders.ner.transitions']"),
    "unexpected tensor": (lambda d, s: resave_state(d, lambda st: st.update(extra=torch.zeros(2))), WEIGHTS,
                          "unexpected ['extra']"),
    "transposed tensor": (lambda d, s: resave_state(
        d, lambda st: st.update({"heads.upos.weight": st["heads.upos.weight"].t().contiguous()})), WEIGHTS,
        "heads.upos.weight has shape"),
    "NaN in a weight": (lambda d, s: resave_state(d, set_nan), WEIGHTS, "NaN or infinite"),
    "infinity in a weight": (lambda d, s: resave_state(d, set_inf), WEIGHTS, "NaN or infinite"),
    # config.json
    "missing config": (lambda d, s: (d / CONFIG).unlink(), CONFIG, "missing"),
    "config not JSON": (lambda d, s: (d / CONFIG).write_text('{"model": {'), CONFIG, "not valid JSON"),
    "config not UTF-8": (lambda d, s: (d / CONFIG).write_bytes(b'{"lang": "\xff"}'), CONFIG, "not valid JSON"),
    "config a JSON list": (lambda d, s: (d / CONFIG).write_text("[]"), CONFIG, "invalid config"),
    "config with an unknown top-level field": (lambda d, s: rewrite_json(d / CONFIG, lambda c: c.update(extra=1)),
                                               CONFIG, "invalid config"),
    "config with an unknown nested field": (lambda d, s: rewrite_json(
        d / CONFIG, lambda c: c["model"]["encoder"].update(bidirectional=False)), CONFIG, "invalid config"),
    "config with an invalid value": (lambda d, s: rewrite_json(
        d / CONFIG, lambda c: c["model"]["encoder"].update(cell="transformer")), CONFIG, "invalid config"),
    "config that builds other shapes": (lambda d, s: rewrite_json(
        d / CONFIG, lambda c: c["model"]["char"].update(hidden=6)), WEIGHTS, "has shape"),
    # labels.json and vocab.json
    "missing labels": (lambda d, s: (d / LABELS).unlink(), LABELS, "missing"),
    "labels without a task": (lambda d, s: rewrite_json(d / LABELS, lambda l: l.pop("ner")), "",
                              "does not match the config"),
    "labels for other tasks": (lambda d, s: (d / LABELS).write_text(json.dumps({"pos": ["NOUN"]})), "",
                               "does not match the config"),
    "labels a list": (lambda d, s: (d / LABELS).write_text(json.dumps(NER_LABELS)), "", "does not match the config"),
    "labels repeated": (lambda d, s: rewrite_json(d / LABELS, lambda l: l["upos"].append(l["upos"][0])), "",
                        "does not match the config"),
    "labels fewer than the weights": (lambda d, s: rewrite_json(d / LABELS, lambda l: l["upos"].pop()), WEIGHTS,
                                      "has shape"),
    "missing vocab": (lambda d, s: (d / VOCAB).unlink(), VOCAB, "missing"),
    "vocab without chars": (lambda d, s: rewrite_json(d / VOCAB, lambda v: v.pop("chars")), VOCAB,
                            "not a word and character vocabulary"),
    "vocab a JSON list": (lambda d, s: (d / VOCAB).write_text("[]"), VOCAB, "not a word and character vocabulary"),
    "vocab with a repeated word": (lambda d, s: rewrite_json(d / VOCAB, lambda v: v["words"].append(v["words"][-1])),
                                   VOCAB, "not unique"),
    "vocab with extra words": (lambda d, s: rewrite_json(d / VOCAB, lambda v: v["words"].append("zyzzyva")), WEIGHTS,
                               "has shape"),
}


def _header(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_bad_artifacts_are_refused(model_dir, sentences, how):
    corrupt, file_name, message = CORRUPTIONS[how]
    corrupt(model_dir, sentences)
    with pytest.raises(ArtifactError) as error:
        load_model(model_dir)
    text = str(error.value)
    assert message in text, text
    assert str(model_dir / file_name if file_name else model_dir) in text, "the message names the file"


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: rewrite_json(d / LABELS, lambda l: l["ner"].append("PERSON")), "labels do not fit the config"),
    (lambda d: rewrite_json(d / LABELS, lambda l: l.update(ner=list(range(len(NER_LABELS))))), "labels"),
    (lambda d: ((d / CONFIG).unlink(), (d / CONFIG).mkdir()), "config.json: cannot read"),
    (lambda d: ((d / LABELS).unlink(), (d / LABELS).mkdir()), "labels.json: cannot read"),
], ids=["span labels that are not span labels", "labels that are not strings", "config is a directory",
        "labels is a directory"])
def test_bad_artifacts_that_once_escaped_as_other_errors(model_dir, corrupt, message):
    corrupt(model_dir)
    with pytest.raises(ArtifactError, match=message):
        load_model(model_dir)


def test_refusal_happens_before_anything_is_returned(model_dir):
    """Loading a good directory after a refused one still works (nothing cached)."""
    good = load_model(model_dir)
    (model_dir / WEIGHTS).write_bytes(b"")
    with pytest.raises(ArtifactError):
        load_model(model_dir)
    save_model(good, model_dir)
    load_model(model_dir)


# --------------------------------------------------------------------------- no pickle

class _Payload:
    """Unpickling this runs code: ``open(marker, "w")`` creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    """Control: the payload used below would create its marker if anything unpickled it."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "pickle protocol 0", "torch.save of a payload",
                                  "torch.save of the real state dict", "torch.save legacy format"])
def test_a_pickle_in_place_of_weights_is_refused_without_running_it(model, model_dir, tmp_path, kind):
    marker = tmp_path / "code-ran"
    weights = model_dir / WEIGHTS
    if kind == "pickle":
        weights.write_bytes(pickle.dumps({"state": _Payload(marker)}))
    elif kind == "pickle protocol 0":
        weights.write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    elif kind == "torch.save of a payload":
        torch.save({"heads.upos.bias": _Payload(marker)}, weights)
    elif kind == "torch.save of the real state dict":
        torch.save({**model.network.state_dict(), "payload": _Payload(marker)}, weights)
    else:
        torch.save({"payload": _Payload(marker)}, weights, _use_new_zipfile_serialization=False)
    assert not marker.exists()
    with pytest.raises(ArtifactError, match="corrupt or truncated") as error:
        load_model(model_dir)
    assert str(weights) in str(error.value)
    assert not marker.exists(), "load_model unpickled the weights file"


def test_loading_never_calls_an_unpickler(model_dir, monkeypatch):
    """With every unpickling entry point booby-trapped, a good directory still loads."""

    def trap(*args, **kwargs):
        raise AssertionError("unpickling during load_model")

    monkeypatch.setattr(pickle, "load", trap)
    monkeypatch.setattr(pickle, "loads", trap)
    monkeypatch.setattr(pickle, "Unpickler", trap)
    monkeypatch.setattr(torch, "load", trap)
    monkeypatch.setattr(builtins, "eval", trap)
    model = load_model(model_dir)
    assert model.tasks == ["upos", "ner"]
