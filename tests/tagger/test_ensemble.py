"""Ensembles: averaged emissions and CRF scores, the directory format, and its errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tagger import Tagger
from tagger.cli import app
from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.inference.predict import predict
from tagger.inference.runtime import OnnxEncoder, onnx_available
from tagger.model.artifact import ArtifactError, save_model
from tagger.model.crf import viterbi
from tagger.model.directory import load_model, weight_files
from tagger.model.ensemble import Ensemble, restrict, save_ensemble
from tagger.training.card import render_card
from tagger.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def members(tiny_ner_model, tiny_ner_model_seed2):
    return [load_model(tiny_ner_model), load_model(tiny_ner_model_seed2)]


@pytest.fixture(scope="module")
def dev_sentences(uner_sentences):
    return [s.tokens for s in uner_sentences["dev"][:150]]


@pytest.fixture(scope="module")
def joint_model(tmp_path_factory, ewt_by_id, uner_sentences):
    """UPOS and NER heads on one encoder: 300 sentences annotated in both corpora, one epoch."""
    examples = []
    for sentence in uner_sentences["train"][:400]:
        pos = ewt_by_id.get(sentence.sent_id)
        if pos is not None and pos.tokens == sentence.tokens:
            examples.append(Example(sentence.tokens, {"upos": pos.labels, "ner": sentence.labels}))
    config = TaggerConfig()
    config.model.tasks = [TaskConfig(name="upos", kind="tag"), TaskConfig(name="ner", kind="span")]
    config.model.word_dim, config.model.char.hidden, config.model.encoder.hidden = 32, 16, 32
    config.train.epochs, config.train.batch_size, config.train.lr = 1, 16, 0.01
    directory = tmp_path_factory.mktemp("models") / "joint"
    return train(config, examples[:300], examples[300:], directory, progress=False).model


def by_hand(models, sentences):
    """NER labels from the members' networks: mean emissions, mean CRF scores, Viterbi."""
    crfs = [m.network.decoders["ner"]._numpy_scores() for m in models]
    start, trans, end = (np.mean([c[i] for c in crfs], axis=0) for i in range(3))
    out = []
    with torch.inference_mode():
        for tokens in sentences:
            emissions = []
            for m in models:
                batch = m.featurizer.batch([Example(tuple(tokens))], with_labels=False)
                emissions.append(m.network(batch.words, batch.chars, batch.char_index, batch.mask)["ner"][0].numpy())
            tags = viterbi(np.mean(emissions, axis=0)[None], np.array([len(tokens)]), start, trans, end)[0]
            items = models[0].featurizer.labels["ner"].items
            out.append(models[0].featurizer.decode_labels("ner", [items[t] for t in tags]))
    return out


def labels(model, sentences, **kwargs):
    return [p["ner"].labels for p in predict(model, sentences, scores=False, **kwargs)]


def test_an_ensemble_decodes_the_average_of_its_members_scores(members, dev_sentences):
    ensemble = Ensemble(members)
    assert ensemble.members == members and ensemble.tasks == ["ner"]
    got = labels(ensemble, dev_sentences)  # batched and padded
    assert got == by_hand(members, dev_sentences)
    assert got != labels(members[0], dev_sentences) or got != labels(members[1], dev_sentences)


def test_an_ensemble_of_one_model_twice_is_that_model(members, dev_sentences):
    twice = Ensemble([members[0], members[0]])
    ours, single = predict(twice, dev_sentences[:40]), predict(members[0], dev_sentences[:40])
    for a, b in zip(ours, single):
        assert a["ner"].labels == b["ner"].labels
        assert a["ner"].scores == pytest.approx(b["ner"].scores, abs=1e-5)


def test_saved_and_loaded_it_tags_the_same(members, dev_sentences, tmp_path):
    save_ensemble(members, tmp_path / "ens", half=False, metrics=[{"dev": {}, "best_epoch": 3}, None])
    loaded = load_model(tmp_path / "ens")
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 2
    assert labels(loaded, dev_sentences) == labels(Ensemble(members), dev_sentences)
    assert sorted(p.name for p in (tmp_path / "ens").iterdir()) == ["ensemble.json", "member-1", "member-2"]
    assert json.loads((tmp_path / "ens" / "member-1" / "metrics.json").read_text())["best_epoch"] == 3
    assert weight_files(tmp_path / "ens") == [tmp_path / "ens" / m / "weights.safetensors" for m in ("member-1", "member-2")]
    # fp16 members: half the weights, labels almost all the same
    save_ensemble(members, tmp_path / "ens", half=True)
    half = labels(load_model(tmp_path / "ens"), dev_sentences)
    same = sum(a == b for a, b in zip(half, labels(loaded, dev_sentences)))
    assert same >= 0.95 * len(dev_sentences)
    assert not (tmp_path / ".ens.staging").exists() and not (tmp_path / ".ens.old").exists()


def test_the_tagger_facade_serves_an_ensemble_with_offsets(members, tmp_path):
    save_ensemble(members, tmp_path / "ens")
    tagger = Tagger.load(tmp_path / "ens")
    text = "Barack Obama visited Paris last week. Apple opened a store in Berlin."
    document = tagger.tag(text)
    assert tagger.tasks == {"ner": "span"} and "B-PER" in tagger.labels["ner"]
    tokens = [t for s in document.sentences for t in s.tokens]
    assert [text[t.start : t.end] for t in tokens] == [t.text for t in tokens]
    for entity in (e for s in document.sentences for e in s.entities):
        assert text[entity.start : entity.end] == entity.text and 0 < entity.score <= 1


@pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed")
def test_the_onnx_backend_runs_every_member(members, dev_sentences, tmp_path):
    save_ensemble(members, tmp_path / "ens")
    ensemble = load_model(tmp_path / "ens")
    encoders = [OnnxEncoder(m.network) for m in ensemble.members]
    assert labels(ensemble, dev_sentences, encoder=encoders) == labels(ensemble, dev_sentences)
    assert Tagger.load(tmp_path / "ens", backend="onnx").backend == "onnx"
    with pytest.raises(ValueError, match="1 onnx encoders for 2"):
        predict(ensemble, dev_sentences[:2], encoder=encoders[:1])


def test_restrict_keeps_one_head_of_a_joint_model(joint_model, members, dev_sentences, tmp_path):
    ner_only = restrict(joint_model, ["ner"])
    assert ner_only.tasks == ["ner"] and set(ner_only.network.heads) == {"ner"}
    assert labels(ner_only, dev_sentences) == labels(joint_model, dev_sentences)
    save_ensemble([members[0], joint_model], tmp_path / "mixed", tasks=["ner"])
    mixed = load_model(tmp_path / "mixed")
    assert [m.tasks for m in mixed.members] == [["ner"], ["ner"]]
    assert labels(mixed, dev_sentences) == by_hand([members[0], ner_only], dev_sentences)
    with pytest.raises(ArtifactError, match="no task upos"):
        restrict(members[0], ["upos"])


def test_members_that_cannot_be_averaged_are_refused(members, tiny_pos_model, tiny_ner_model_seed2, tmp_path):
    pos = load_model(tiny_pos_model)
    with pytest.raises(ArtifactError, match="member 2 has no task ner"):
        Ensemble([members[0], pos])
    reordered = shutil.copytree(tiny_ner_model_seed2, tmp_path / "reordered")
    labels_file = reordered / "labels.json"
    names = json.loads(labels_file.read_text())
    names["ner"][1], names["ner"][5] = names["ner"][5], names["ner"][1]  # same labels, another order
    labels_file.write_text(json.dumps(names))
    with pytest.raises(ArtifactError, match="labels of 'ner' differ from member 1's"):
        Ensemble([members[0], load_model(reordered)])
    with pytest.raises(TypeError, match="save_ensemble"):
        save_model(Ensemble(members), "/nonexistent")


@pytest.mark.parametrize("spec, message", [
    ('{"tasks": ["ner"], "members": ["../ner"]}', "not a plain subdirectory name"),
    ('{"tasks": ["ner"], "members": []}', "at least 1 item"),
    ('{"tasks": ["ner"], "members": ["member-1", "member-1"]}', "member names repeat"),
    ('{"tasks": ["ner"], "members": ["member-1", "missing"]}', "missing: not a model directory"),
    ('{"tasks": ["ner"]', "not valid JSON"),
    ('{"tasks": ["ner"], "members": ["member-1"], "weights": 1}', "Extra inputs"),
])
def test_a_bad_ensemble_json_is_an_artifact_error(members, tmp_path, spec, message):
    save_ensemble(members, tmp_path / "ens")
    (tmp_path / "ens" / "ensemble.json").write_text(spec)
    with pytest.raises(ArtifactError, match=message):
        load_model(tmp_path / "ens")


def test_a_damaged_member_names_its_file(members, tmp_path):
    save_ensemble(members, tmp_path / "ens")
    weights = tmp_path / "ens" / "member-2" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="member-2/weights.safetensors: corrupt or truncated"):
        load_model(tmp_path / "ens")
    shutil.copytree(tmp_path / "ens" / "member-1", tmp_path / "outer" / "inner")
    save_ensemble(members, tmp_path / "outer" / "inner")
    (tmp_path / "outer" / "ensemble.json").write_text('{"tasks": ["ner"], "members": ["inner"]}')
    with pytest.raises(ArtifactError, match="cannot be a member of another"):
        load_model(tmp_path / "outer")


def test_training_from_an_ensemble_is_refused(members, uner_sentences, tmp_path):
    data = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["train"][:20]]
    with pytest.raises(ValueError, match="cannot train from an ensemble"):
        train(TaggerConfig(), data, data, tmp_path / "out", progress=False, base=Ensemble(members))


def test_the_card_lists_members_and_scores(members, tmp_path, uner_sentences):
    from tagger.training.train import evaluate_model

    dev = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:100]]
    save_ensemble(members, tmp_path / "ens", metrics=[{"dev": evaluate_model(m, dev), "best_epoch": 3,
                                                        "train_seconds": 60} for m in members])
    report = evaluate_model(load_model(tmp_path / "ens"), dev)
    (tmp_path / "ens" / "metrics.json").write_text(json.dumps({"dev": report, "half": True}))
    card = render_card(tmp_path / "ens", "tiny-ensemble")
    assert card.startswith("# tiny-ensemble\n\nEnsemble of 2 BiLSTM-CRF taggers")
    assert "2.0 min of training" in card
    member_dev = evaluate_model(members[1], dev)["ner"]["f1"]
    assert f"| member-2 | - | 2 | ner {100 * member_dev:.2f} | - | 3 | 1.0 |" in card
    assert f"F1 {100 * report['ner']['f1']:.2f}" in card


def test_the_cli_builds_one_and_refuses_nonsense(tiny_ner_model, tiny_ner_model_seed2, tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(app, ["ensemble", str(tiny_ner_model), str(tiny_ner_model_seed2), "--output",
                                 str(tmp_path / "ens")])
    assert result.exit_code == 0, result.output
    assert len(load_model(tmp_path / "ens").members) == 2
    for argv, message in ((["ensemble", str(tiny_ner_model), "--output", str(tmp_path / "one")], "two or more"),
                          (["ensemble", str(tmp_path / "ens"), str(tiny_ner_model), "--output", str(tmp_path / "x")],
                           "cannot be a member of another"),
                          (["ensemble", str(tiny_ner_model), str(tiny_ner_model), "--output", str(tiny_ner_model)],
                           "is one of the members")):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "one").exists()


def test_members_side_by_side_tag_as_one_after_another(members, dev_sentences, monkeypatch):
    """With one torch thread (the service's setting) an ensemble's members run on pool threads;
    with more they run in turn. Same labels, same scores."""
    import threading

    from tagger.inference import predict as predict_module

    ensemble = Ensemble(members)
    threads = set()
    original = predict_module._member_emissions

    def spy(*args):
        threads.add(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(predict_module, "_member_emissions", spy)
    side_by_side = predict(ensemble, dev_sentences)
    caller = threading.current_thread().name
    assert caller in threads and any(name.startswith("tagger-member") for name in threads - {caller})
    threads.clear()
    torch.set_num_threads(2)
    try:
        in_turn = predict(ensemble, dev_sentences)
    finally:
        torch.set_num_threads(1)
    assert threads == {threading.current_thread().name}
    for a, b in zip(side_by_side, in_turn, strict=True):
        assert a["ner"].labels == b["ner"].labels
        assert a["ner"].scores == pytest.approx(b["ner"].scores, abs=1e-6)
