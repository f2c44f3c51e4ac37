"""The command line end to end on real corpora: train, evaluate --json, tag, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tagger.cli import app
from tagger.data.readers import load_corpus
from tagger.data.schemes import convert, entity_types

runner = CliRunner()
FAST = ["--epochs", "1", "--quiet", "--set", "model.encoder.hidden=32", "--set", "model.word_dim=32",
        "--set", "model.char.hidden=16"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def conll2003_files(tmp_path_factory, uner_sentences, ewt_by_id):
    """CoNLL-2003 layout built from real EWT sentences: token, Penn POS, IOB1 chunk, IOB1 NER,
    space-separated, with -DOCSTART- lines."""
    directory = tmp_path_factory.mktemp("conll2003")
    paths = {}
    for split, count in (("train", 250), ("dev", 80)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for index, sentence in enumerate(uner_sentences[split][:count]):
            xpos = ewt_by_id[sentence.sent_id].rows
            iob1 = convert(sentence.labels, "iob2", "iob1")
            for token, row, label in zip(sentence.tokens, xpos, iob1):
                chunk = "I-NP" if row[4].startswith("NN") else "I-VP" if row[4].startswith("VB") else "O"
                lines.append(f"{token} {row[4]} {chunk} {label}")
            lines.append("")
            if index % 50 == 49:
                lines += ["-DOCSTART- -X- -X- O", ""]
        paths[split] = directory / f"{split}.txt"
        paths[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def test_train_then_evaluate_json_on_ewt(tmp_path, shared_data, write_head):
    train = write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-train.conllu", tmp_path / "train.conllu", 300)
    dev = shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu"
    result = run("train", "--train", train, "--dev", dev, "--output", tmp_path / "pos", *FAST, "--set", "train.lr=0.01")
    assert result.exit_code == 0, result.output
    assert "dev upos accuracy" in result.output and "recipe: tag-small" in result.output  # no --config: built-in
    result = run("evaluate", "--model", tmp_path / "pos", "--data", dev, "--json", "--confusion", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sentences"] == 2001 and report["tokens"] == 25147
    assert 0.2 < report["accuracy"] <= 1  # above the most frequent tag (NOUN, 17%)
    assert {"ADJ", "NOUN", "VERB"} <= set(report["per_label"])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert report["backend"] == "torch"
    quantized = run("evaluate", "--model", tmp_path / "pos", "--data", dev, "--json", "--backend", "int8")
    assert quantized.exit_code == 0, quantized.output
    int8 = json.loads(quantized.stdout)
    assert int8["backend"] == "int8" and int8["tokens"] == report["tokens"]
    assert abs(int8["accuracy"] - report["accuracy"]) < 0.01  # int8 labels, scored on the same corpus
    refused = run("evaluate", "--model", tmp_path / "pos", "--data", dev, "--backend", "gpu")
    assert refused.exit_code != 0 and "--backend must be one of" in refused.output


@pytest.mark.parametrize("corpus, extra", [
    ("uner", []),
    ("wnut", []),
    ("conll2003", []),
])
def test_span_corpora_need_no_format_flags(corpus, extra, tmp_path, shared_data, conll2003_files, write_head):
    if corpus == "uner":
        train = write_head(shared_data / "uner-english-ewt" / "en_ewt-ud-train.iob2", tmp_path / "t.iob2", 300)
        dev = write_head(shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2", tmp_path / "d.iob2", 100)
    elif corpus == "wnut":
        train = write_head(shared_data / "wnut17" / "wnut17train.conll", tmp_path / "t.conll", 300)
        dev = write_head(shared_data / "wnut17" / "emerging.dev.conll", tmp_path / "d.conll", 100)
    else:
        train, dev = conll2003_files["train"], conll2003_files["dev"]
    types = set(entity_types(label for s in load_corpus(dev).sentences for label in s.labels))
    assert len(types) >= 2
    result = run("train", "--train", train, "--dev", dev, "--output", tmp_path / "m", *FAST, *extra)
    assert result.exit_code == 0, result.output
    assert "dev ner F1" in result.output
    result = run("evaluate", "--model", tmp_path / "m", "--data", dev, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"accuracy", "precision", "recall", "f1", "per_label", "sentences", "tokens"} <= set(report)
    assert all(0 <= report[k] <= 1 for k in ("accuracy", "precision", "recall", "f1"))
    assert types <= set(report["per_label"])


def test_tag_round_trips_offsets(tiny_pos_model, tmp_path):
    texts = ["Hello  world!\tSecond  sentence here.", "Emoji 👩‍👩‍👧 and שלום עולם.", ""]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    result = run("tag", "--model", tiny_pos_model, "--input", source, "--output", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["d0", "d1", "d2"]
    for record, text in zip(records, texts):
        assert all(text[t["start"]:t["end"]] == t["text"] for t in record["tokens"])
        assert all(0 <= t["score"] <= 1 + 1e-6 and t["label"] for t in record["tokens"])
    assert records[2]["tokens"] == []
    quantized = run("tag", "--model", tiny_pos_model, "--input", source, "--output", tmp_path / "int8.jsonl",
                    "--backend", "int8")
    assert quantized.exit_code == 0, quantized.output
    assert [json.loads(line)["id"] for line in (tmp_path / "int8.jsonl").read_text().splitlines()] == ["d0", "d1", "d2"]
    refused = run("tag", "--model", tiny_pos_model, "--input", source, "--output", tmp_path / "x.jsonl", "--backend", "gpu")
    assert refused.exit_code != 0 and "int8" in refused.output


def test_tag_plain_text_from_stdin(tiny_pos_model):
    result = runner.invoke(app, ["tag", "--model", str(tiny_pos_model)], input="One line.\nAnother one here.\n")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == [1, 2]
    assert [t["text"] for t in records[1]["tokens"]] == ["Another", "one", "here", "."]


@pytest.mark.parametrize("output_format", ["conllu", "conll"])
def test_tag_conllu_input_keeps_tokens(tiny_pos_model, tmp_path, shared_data, output_format, write_head):
    source = write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu", tmp_path / "dev.conllu", 5)
    out = tmp_path / f"out.{output_format}"
    result = run("tag", "--model", tiny_pos_model, "--input", source, "--input-format", "conllu",
                 "--output", out, "--output-format", output_format)
    assert result.exit_code == 0, result.output
    from tagger.data.readers import read_columns, read_conllu
    gold = list(read_conllu(source))
    tagged = list(read_conllu(out)) if output_format == "conllu" else list(read_columns(out))
    assert [s.tokens for s in tagged] == [s.tokens for s in gold]
    if output_format == "conllu":
        assert [s.sent_id for s in tagged] == [s.sent_id for s in gold]
        assert [r[2] for s in tagged for r in s.rows] == [r[2] for s in gold for r in s.rows]  # lemmas kept


@pytest.mark.parametrize("content, line, message", [
    ("tok\tO\nbad\tB-PER\textra\n", 2, "expected 2 columns, found 3"),
    ("tok\tO\nfine\tS-PER\n", 2, "does not fit the IOB2 scheme"),
    ("tok\tO\nfine\tB_PER\n", 2, "is not 'O' or PREFIX-TYPE"),
])
def test_bad_corpus_fails_clearly_and_writes_nothing(content, line, message, tmp_path, shared_data):
    bad = tmp_path / "bad.conll"
    bad.write_text("a\tO\nb\tB-PER\n\n" * 3 + content, encoding="utf-8")
    line += 9
    dev = shared_data / "wnut17" / "emerging.dev.conll"
    result = run("train", "--train", bad, "--dev", dev, "--output", tmp_path / "never", "--scheme", "iob2", *FAST)
    assert result.exit_code == 2
    assert f"{bad}:{line}:" in result.output and message in result.output
    assert not (tmp_path / "never").exists()


def test_invalid_utf8_is_reported_with_line(tmp_path, shared_data):
    bad = tmp_path / "bad.conll"
    bad.write_bytes(b"a\tO\nb\tB-PER\n\nc\xff\xfe\tO\n")
    result = run("train", "--train", bad, "--dev", shared_data / "wnut17" / "emerging.dev.conll",
                 "--output", tmp_path / "never", *FAST)
    assert result.exit_code == 2
    assert f"{bad}:4: invalid UTF-8" in result.output
    assert not (tmp_path / "never").exists()


def test_evaluate_refuses_corrupt_model(tmp_path, tiny_pos_model, shared_data):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pos_model, broken)
    weights = broken / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = run("evaluate", "--model", broken, "--data", shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu")
    assert result.exit_code == 2
    assert "weights.safetensors" in result.output and "corrupt or truncated" in result.output


def test_two_label_columns_train_two_heads(tmp_path, shared_data, write_head):
    train = write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-train.conllu", tmp_path / "train.conllu", 200)
    dev = write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu", tmp_path / "dev.conllu", 60)
    result = run("train", "--train", train, "--dev", dev, "--output", tmp_path / "pos", "--label-column", "upos,xpos", *FAST)
    assert result.exit_code == 0, result.output
    assert "upos accuracy" in result.output and "xpos accuracy" in result.output
    upos = json.loads(run("evaluate", "--model", tmp_path / "pos", "--data", dev, "--json").stdout)
    xpos = json.loads(run("evaluate", "--model", tmp_path / "pos", "--data", dev, "--label-column", "xpos", "--json").stdout)
    assert (upos["task"], xpos["task"]) == ("upos", "xpos")
    assert "NOUN" in upos["per_label"] and "NN" in xpos["per_label"]


def test_softmax_decoder_option(tmp_path, shared_data, write_head):
    train = write_head(shared_data / "wnut17" / "wnut17train.conll", tmp_path / "t.conll", 150)
    dev = write_head(shared_data / "wnut17" / "emerging.dev.conll", tmp_path / "d.conll", 50)
    result = run("train", "--train", train, "--dev", dev, "--output", tmp_path / "m", "--decoder", "softmax", *FAST)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["tasks"][0]["decoder"] == "softmax"
    tagged = runner.invoke(app, ["tag", "--model", str(tmp_path / "m")], input="Going to Paris with Justin Bieber .\n")
    assert tagged.exit_code == 0, tagged.output
    record = json.loads(tagged.stdout)
    assert all(0 <= t["score"] <= 1 for t in record["tokens"])


def test_bad_decoder_is_refused(tmp_path, shared_data):
    result = run("train", "--train", shared_data / "wnut17" / "emerging.dev.conll", "--dev",
                 shared_data / "wnut17" / "emerging.dev.conll", "--output", tmp_path / "m", "--decoder", "beam", *FAST)
    assert result.exit_code == 2
    assert "decoder" in result.output
    assert not (tmp_path / "m").exists()


def test_tag_reports_invalid_utf8_input_with_its_line(tiny_pos_model, tmp_path):
    source = tmp_path / "docs.txt"
    source.write_bytes("Fine line .\n".encode() + b"bad \xff byte\n")
    result = run("tag", "--model", tiny_pos_model, "--input", source, "--output", tmp_path / "out.jsonl")
    assert result.exit_code == 2
    assert f"{source}:2: invalid UTF-8 at byte 4 of the line" in result.output
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


def test_training_log_to_a_file_has_a_line_per_epoch_and_no_bar(tmp_path, shared_data, write_head):
    """stderr redirected (a job log, CI, nohup): no progress-bar redraws, one line per epoch."""
    import subprocess
    import sys

    train = write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-train.conllu", tmp_path / "train.conllu", 200)
    dev = write_head(shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu", tmp_path / "dev.conllu", 50)
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run([sys.executable, "-m", "server.cli", "train", "--train", str(train), "--dev", str(dev),
                        "--output", str(tmp_path / "pos"), "--epochs", "2", *FAST[3:]],  # FAST without --quiet
                       stdout=log, stderr=subprocess.STDOUT, check=True)
    text = (tmp_path / "log.txt").read_text()
    assert "\r" not in text and "batch/s" not in text
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]


def test_prune_keeps_the_first_word_rows_and_the_model_still_scores(tmp_path, tiny_pos_model, tiny_ner_model,
                                                                   tiny_ner_model_seed2, shared_data):
    from tagger.model.directory import load_model

    dev = shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu"
    words = load_model(tiny_pos_model).featurizer.words
    result = run("prune", tiny_pos_model, "--words", 1000, "--output", tmp_path / "pruned")
    assert result.exit_code == 0, result.output
    assert f"1,000 of {len(words):,} word rows kept" in result.output
    pruned = load_model(tmp_path / "pruned")
    assert pruned.featurizer.words.items == words.items[:1000]
    full = json.loads(run("evaluate", "--model", tiny_pos_model, "--data", dev, "--json").output)
    small = json.loads(run("evaluate", "--model", tmp_path / "pruned", "--data", dev, "--json").output)
    assert 0.5 < small["accuracy"] <= full["accuracy"] + 0.01  # the rarest words became unknown
    # Refused: the model's own directory, an ensemble, too few rows; nothing is written.
    assert "is the model itself" in run("prune", tiny_pos_model, "--words", 10, "--output", tiny_pos_model).output
    run("ensemble", tiny_ner_model, tiny_ner_model_seed2, "--output", tmp_path / "ens")
    result = run("prune", tmp_path / "ens", "--words", 10, "--output", tmp_path / "x")
    assert result.exit_code == 2 and "members one by one" in result.output and not (tmp_path / "x").exists()
    result = run("prune", tiny_pos_model, "--words", 1, "--output", tmp_path / "y")
    assert result.exit_code == 2 and not (tmp_path / "y").exists()
