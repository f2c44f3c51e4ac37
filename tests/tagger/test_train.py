"""Training on real EWT sentences: train -> save -> load -> predict identically, resume, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.inference.predict import predict
from tagger.model.directory import load_model
from tagger.training.train import CHECKPOINT, CURVE, train


def small_config(epochs: int = 2, **train_overrides) -> TaggerConfig:
    config = TaggerConfig()
    config.model.tasks = [TaskConfig(name="upos", kind="tag")]
    config.model.word_dim = 32
    config.model.char.hidden = 16
    config.model.encoder.hidden = 32
    config.train.epochs = epochs
    config.train.batch_size = 16
    config.train.lr = 0.01
    for key, value in train_overrides.items():
        setattr(config.train, key, value)
    return config


@pytest.fixture(scope="module")
def pos_examples(ewt_sentences):
    train_part = [Example(s.tokens, {"upos": s.labels}) for s in ewt_sentences["train"][:300]]
    dev_part = [Example(s.tokens, {"upos": s.labels}) for s in ewt_sentences["dev"][:100]]
    return train_part, dev_part


def test_train_save_load_predicts_identically(pos_examples, tmp_path):
    train_part, dev_part = pos_examples
    result = train(small_config(epochs=3), train_part, dev_part, tmp_path / "model", progress=False)
    directory = tmp_path / "model"
    for name in ("config.json", "vocab.json", "labels.json", "weights.safetensors", "metrics.json", CURVE, "README.md",
                 "confusion-upos.png"):
        assert (directory / name).is_file(), name
    assert not (directory / CHECKPOINT).exists()
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2, 3) and len(metrics["history"]) == 3
    assert metrics["dev"]["upos"]["accuracy"] > 0.4  # 3 epochs on 300 sentences: well above chance (1/17)
    assert (directory / CURVE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (directory / "README.md").read_text()
    assert "| upos | tag | crf | 17 |" in card
    assert f"### upos on dev: token accuracy {100 * metrics['dev']['upos']['accuracy']:.2f}%" in card
    assert "| NOUN |" in card and "| train.lr | 0.01 |" in card
    loaded = load_model(directory)
    sentences = [e.tokens for e in dev_part]
    before = predict(result.model, sentences)
    after = predict(loaded, sentences)
    assert [p["upos"].labels for p in before] == [p["upos"].labels for p in after]
    assert [p["upos"].scores for p in before] == [p["upos"].scores for p in after]


def test_same_seed_same_model(pos_examples, tmp_path):
    train_part, dev_part = pos_examples
    first = train(small_config(epochs=1), train_part[:120], dev_part[:30], tmp_path / "a", progress=False)
    second = train(small_config(epochs=1), train_part[:120], dev_part[:30], tmp_path / "b", progress=False)
    for (name, a), (_, b) in zip(first.model.network.state_dict().items(), second.model.network.state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_after_interruption_matches_uninterrupted_run(pos_examples, tmp_path):
    train_part, dev_part = pos_examples
    train_part, dev_part = train_part[:120], dev_part[:30]
    config = small_config(epochs=2, schedule="none")
    reference = train(config, train_part, dev_part, tmp_path / "ref", progress=False)

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, train_part, dev_part, tmp_path / "run", progress=False, on_epoch=interrupt)
    assert (tmp_path / "run" / CHECKPOINT / "state.json").is_file()
    load_model(tmp_path / "run")  # the best model so far is already a usable model directory
    resumed = train(config, train_part, dev_part, tmp_path / "run", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2]
    assert resumed.metrics["history"][1]["loss"] == pytest.approx(reference.metrics["history"][1]["loss"], rel=1e-5)
    for (name, a), (_, b) in zip(reference.model.network.state_dict().items(),
                                 resumed.model.network.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_early_stopping_stops_after_patience(pos_examples, tmp_path):
    train_part, dev_part = pos_examples
    # A zero-ish learning rate cannot improve the dev score after epoch 1.
    config = small_config(epochs=10, patience=2, lr=1e-12, schedule="none")
    result = train(config, train_part[:60], dev_part[:20], tmp_path / "m", progress=False)
    assert result.metrics["epochs_run"] <= 1 + 2 + 1
    assert result.metrics["epochs_run"] < 10


def test_span_task_trains_with_iobes_inside_and_iob2_outside(uner_sentences, tmp_path):
    config = small_config(epochs=2)
    config.model.tasks = [TaskConfig(name="ner", kind="span", encoding="iobes")]
    train_part = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["train"][:200]]
    dev_part = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:60]]
    result = train(config, train_part, dev_part, tmp_path / "ner", progress=False)
    labels = json.loads((tmp_path / "ner" / "labels.json").read_text())["ner"]
    assert {"S-PER", "E-LOC", "B-ORG"} <= set(labels)
    report = result.metrics["dev"]["ner"]
    assert {"precision", "recall", "f1", "per_label"} <= set(report)
    outputs = {label for p in predict(result.model, [e.tokens for e in dev_part]) for label in p["ner"].labels}
    assert outputs <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}


def test_training_from_a_base_model(pos_examples, tmp_path):
    train_part, dev_part = pos_examples
    first = train(small_config(epochs=1), train_part, dev_part[:30], tmp_path / "base", progress=False)
    other = small_config(epochs=1)
    other.model.encoder.hidden = 999  # ignored: the base model's architecture is kept
    tuned = train(other, train_part[:100], dev_part[:30], tmp_path / "tuned", progress=False, base=first.model)
    assert tuned.model.config.model == first.model.config.model
    assert tuned.model.featurizer.words.items == first.model.featurizer.words.items
    before = first.model.network.state_dict()
    after = tuned.model.network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    bad = [Example(("x",), {"upos": ("NOT-A-TAG",)})]
    with pytest.raises(ValueError, match="has no label NOT-A-TAG"):
        train(small_config(epochs=1), bad, bad, tmp_path / "bad", progress=False, base=first.model)
    with pytest.raises(ValueError, match="has no task ner"):
        train(small_config(epochs=1), [Example(("x",), {"ner": ("O",)})], bad, tmp_path / "bad2", progress=False,
              base=first.model)


def test_init_from_starts_new_labels_on_a_trained_encoder(pos_examples, uner_sentences, tmp_path):
    from tagger.model.artifact import build_model
    from tagger.training.train import build_vocabularies, transfer, with_architecture

    train_part, dev_part = pos_examples
    source = train(small_config(epochs=1), train_part, dev_part[:30], tmp_path / "pos", progress=False).model
    ner = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["train"][:80]]
    config = small_config(epochs=1)
    config.model.tasks = [TaskConfig(name="ner", kind="span"), TaskConfig(name="upos", kind="tag")]
    config.model.encoder.hidden = 48  # replaced: the weights only fit the init model's architecture
    config.model.dropout = 0.3  # kept: training settings stay this config's
    config = with_architecture(config, source)
    assert config.model.encoder == source.config.model.encoder and config.model.char == source.config.model.char
    assert config.model.dropout == 0.3 and [t.name for t in config.model.tasks] == ["ner", "upos"]

    # a POS corpus with one label fewer than the source's: upos's head must not be copied
    mixed = ner + [Example(e.tokens, {"upos": e.labels["upos"]}) for e in train_part if "X" not in e.labels["upos"]]
    words, chars, labels, _, _ = build_vocabularies(config, mixed)
    target = build_model(config, words, chars, labels)
    fresh = {k: v.clone() for k, v in target.network.state_dict().items()}
    copied = transfer(source, target)
    src, dst = source.network.state_dict(), target.network.state_dict()
    for name in src:
        if name.startswith(("encoder.", "chars.conv")):
            assert torch.equal(dst[name], src[name]), name
    shared = [w for w in words.items if w in source.featurizer.words.index]
    assert copied["words"] == len(shared) > 100 and copied["chars"] > 20
    for word in shared[:50]:
        assert torch.equal(dst["word_embed.weight"][words.index[word]],
                           src["word_embed.weight"][source.featurizer.words.index[word]]), word
    assert labels["upos"].items != source.featurizer.labels["upos"].items
    assert all(torch.equal(dst[k], fresh[k]) for k in dst if k.startswith(("heads.", "decoders.")))

    config.train.init_from = str(tmp_path / "pos")  # the whole route: train() loads it and starts from it
    config.model.tasks = [TaskConfig(name="ner", kind="span")]
    result = train(config, ner, [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:30]],
                   tmp_path / "ner", progress=False)
    saved = json.loads((tmp_path / "ner" / "config.json").read_text())
    assert saved["model"]["encoder"]["hidden"] == source.config.model.encoder.hidden
    assert saved["train"]["init_from"] == str(tmp_path / "pos")
    assert result.model.tasks == ["ner"]
    assert set(source.featurizer.words.items) <= set(result.model.featurizer.words.items)  # words unseen here kept
    with pytest.raises(ValueError, match="not both"):
        train(config, ner, ner, tmp_path / "both", progress=False, base=source)
    config.train.init_from = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="missing: not a model directory"):
        train(config, ner, ner, tmp_path / "none", progress=False)


def test_init_from_with_vectors_gives_rows_to_the_words_the_init_model_lacks(pos_examples, uner_sentences, tmp_path,
                                                                            capsys):
    train_part, dev_part = pos_examples
    source = train(small_config(epochs=1), train_part[:100], dev_part[:20], tmp_path / "pos", progress=False).model
    ner = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["train"][:60]]
    seen = {t.lower() for e in ner for t in e.tokens}
    known, own = [w for w in source.featurizer.words.items[2:] if w.isalpha() and w not in seen][:2]
    unseen = "zyxwvut"  # in neither corpus: this run knows it only from the vectors file
    rng = np.random.default_rng(0)
    rows = {word: rng.normal(size=32).round(4).astype(np.float32) for word in (known, unseen)}
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()), encoding="utf-8")
    config = small_config(epochs=1)
    config.model.tasks = [TaskConfig(name="ner", kind="span")]
    config.model.vectors, config.train.init_from = str(vectors), str(tmp_path / "pos")
    dev = [Example(s.tokens, {"ner": s.labels}) for s in uner_sentences["dev"][:20]]
    model = train(config, ner, dev, tmp_path / "ner", progress=False).model
    table, words = model.network.word_embed.weight.detach().numpy(), model.featurizer.words.index
    # no word here is in this corpus, so no step moved their rows (Adam without weight decay)
    np.testing.assert_array_equal(table[words[unseen]], rows[unseen])  # the vectors' row
    trained = source.network.word_embed.weight.detach().numpy()
    for word in (known, own):  # the init model's trained rows: over the file's, and where the file has none
        np.testing.assert_array_equal(table[words[word]], trained[source.featurizer.words.index[word]])
    assert set(source.featurizer.words.items) <= set(model.featurizer.words.items)
    # vectors of another size than the init model's words (a recipe's GloVe on a model trained
    # without them): not used, and said
    vectors.write_text(f"{unseen} {' '.join(['0.5'] * 20)}\n", encoding="utf-8")
    capsys.readouterr()
    model = train(config, ner, dev, tmp_path / "other-size", progress=False).model
    assert "vectors.txt not used: 20 dimensions, the words of" in capsys.readouterr().err
    assert model.config.model.vectors is None and unseen not in model.featurizer.words.index
    assert own in model.featurizer.words.index


def test_the_optimizer_updates_only_the_word_rows_in_use_and_trains_the_same_bit_for_bit(pos_examples, tmp_path,
                                                                                         monkeypatch):
    from tagger.training import train as training

    train_part, dev_part = pos_examples
    rng = np.random.default_rng(0)
    words = sorted({t.lower() for e in dev_part for t in e.tokens} | {f"unseen{i}" for i in range(500)})
    vectors = tmp_path / "vectors.txt"  # rows for words no training token uses: the table's tail
    vectors.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.normal(size=32))}\n" for w in words),
                       encoding="utf-8")
    config = small_config(epochs=2)
    config.model.vectors = str(vectors)
    handed: list[int] = []
    real = training._optimizer

    def spy(config, network, rows=None):
        handed.append(0 if rows is None else rows.rows.shape[0])
        return real(config, network, rows)

    monkeypatch.setattr(training, "_optimizer", spy)
    looked_up: set[int] = set()  # rows of the word table the training steps look words up in
    embed = torch.nn.Embedding.forward

    def spy_embed(self, ids):
        if self.training and self.embedding_dim == config.model.word_dim:
            looked_up.add(self.weight.shape[0])
        return embed(self, ids)

    monkeypatch.setattr(torch.nn.Embedding, "forward", spy_embed)
    fast = train(config, train_part[:120], dev_part[:30], tmp_path / "fast", progress=False).model
    fast_looked_up = set(looked_up)
    looked_up.clear()
    monkeypatch.setattr(training._WordRowsInUse, "of", classmethod(lambda cls, model, data: None))
    whole = train(config, train_part[:120], dev_part[:30], tmp_path / "whole", progress=False).model
    index = fast.featurizer.words.index
    used = 1 + max(index.get(t.lower(), 1) for e in train_part[:120] for t in e.tokens)
    assert handed == [used, 0] and used < len(fast.featurizer.words) - 500
    assert fast_looked_up == {used} and looked_up == {len(fast.featurizer.words)}  # the rows in use; the whole table
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(fast.network.state_dict()[name], tensor), name
    tail = fast.network.word_embed.weight.detach()[index["unseen0"]].numpy()
    first = vectors.read_text(encoding="utf-8").split("\n")[words.index("unseen0")].split(" ")[1:]
    np.testing.assert_array_equal(tail, np.asarray(first, dtype=np.float32))  # never moved
    # a checkpoint with the whole table's optimizer state (as before the rows in use) resumes,
    # its state cut to the rows in use, into the same model
    def stop(record):
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        train(config, train_part[:120], dev_part[:30], tmp_path / "cut", progress=False, on_epoch=stop)
    monkeypatch.undo()
    resumed = train(config, train_part[:120], dev_part[:30], tmp_path / "cut", progress=False, resume=True).model
    for name, tensor in fast.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[name], tensor), name


def test_optimizer_state_that_fits_no_parameter_is_refused(tmp_path):
    from tagger.training.train import _fitted

    rows = torch.zeros(3, 2)
    state = torch.zeros(5, 2)
    state[:3] = 1.0
    assert torch.equal(_fitted(state, rows, tmp_path), state[:3])  # a whole table's: the tail is zero
    assert _fitted(torch.tensor(4.0), rows, tmp_path) == 4.0  # Adam's step count
    state[4, 1] = 0.5  # a tail that moved: not a table cut to its rows in use
    for wrong, param in ((state, rows), (torch.zeros(3, 4), rows), (torch.zeros(3, 2), None)):
        with pytest.raises(ValueError, match="optimizer state does not fit"):
            _fitted(wrong, param, tmp_path)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_whole(pos_examples, tmp_path, monkeypatch):
    import errno

    import tagger.training.train as training
    from tagger.data import writers

    train_part, dev_part = pos_examples
    train_part, dev_part = train_part[:120], dev_part[:30]
    config = small_config(epochs=3, schedule="none")
    output = tmp_path / "run"
    writes = []

    def full_disk_on_the_second_checkpoint(path, data: bytes) -> None:
        writes.append(path)
        if len(writes) == 1:  # epoch 1's tensors (state.json goes through atomic_write_text)
            return writers.atomic_write_bytes(path, data)
        with writers._atomic(path, "wb") as handle:  # half the bytes reach the disk, then it is full
            handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training, "atomic_write_bytes", full_disk_on_the_second_checkpoint)
    with pytest.raises(OSError) as raised:
        train(config, train_part, dev_part, output, progress=False)
    message = str(raised.value)
    assert "cannot write the checkpoint" in message and "No space left on device" in message
    assert "the previous checkpoint is kept" in message and raised.value.errno == errno.ENOSPC
    leftovers = sorted(p.name for p in output.iterdir() if p.name.startswith((".", f"{CHECKPOINT}.")))
    assert leftovers == [], "nothing partial is kept"
    assert sorted(p.name for p in (output / CHECKPOINT).iterdir()) == ["state.json", "state.safetensors"]
    assert json.loads((output / CHECKPOINT / "state.json").read_text())["epoch"] == 1
    load_model(output)  # the best model so far is intact
    monkeypatch.undo()

    # A crash between the two renames of a later swap leaves only checkpoint.old: resume finds it.
    (output / CHECKPOINT).rename(output / f"{CHECKPOINT}.old")
    (output / f"{CHECKPOINT}.new").mkdir()
    (output / f"{CHECKPOINT}.new" / "state.safetensors").write_bytes(b"partial")
    resumed = train(config, train_part, dev_part, output, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2, 3]
    assert sorted(p.name for p in output.iterdir() if p.name.startswith(CHECKPOINT)) == []
