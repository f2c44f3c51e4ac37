"""Writers: CoNLL-U with labels filled in, two-column, JSONL, and atomic output."""

from __future__ import annotations

import dataclasses
import io
import json
import os

import pytest

from tagger.data.corpus import Sentence
from tagger.data.readers import read_columns, read_conllu
from tagger.data.writers import (atomic_output, atomic_write_bytes, atomic_write_text, write_columns, write_conllu,
                            write_jsonl)


@pytest.fixture(scope="module")
def ewt_head(data_dir):
    """The first 50 sentences of the real EWT dev file (it has multiword tokens and comments)."""
    return list(read_conllu(data_dir / "ud-english-ewt" / "en_ewt-ud-dev.conllu"))[:50]


def without_positions(sentence: Sentence) -> Sentence:
    """Line numbers change on writing: multiword-token and empty-node lines are not written back."""
    return dataclasses.replace(sentence, line=0, token_lines=())


def write_conllu_file(path, sentences, column="upos"):
    with atomic_output(path) as handle:
        write_conllu(sentences, handle, column)
    return path


def test_conllu_round_trip_of_real_sentences(ewt_head, tmp_path):
    path = write_conllu_file(tmp_path / "out.conllu", ewt_head)
    back = list(read_conllu(path))
    assert [without_positions(s) for s in back] == [without_positions(s) for s in ewt_head]
    assert sum(len(s.tokens) for s in back) > 500


@pytest.mark.parametrize("column, index", [("upos", 3), ("xpos", 4)])
def test_conllu_fills_new_labels_into_one_column(ewt_head, tmp_path, column, index):
    predicted = [s.with_labels([f"P{i}" for i in range(len(s.tokens))]) for s in ewt_head]
    path = write_conllu_file(tmp_path / "out.conllu", predicted, column)
    back = list(read_conllu(path, column))
    assert [s.labels for s in back] == [s.labels for s in predicted]
    for written, source in zip(back, ewt_head):
        assert [r[:index] + r[index + 1:] for r in written.rows] == [r[:index] + r[index + 1:] for r in source.rows]
        assert (written.sent_id, written.text, written.comments) == (source.sent_id, source.text, source.comments)


def test_conllu_for_sentences_without_rows():
    handle = io.StringIO()
    write_conllu([Sentence(("Hi", "!"), ("INTJ", "PUNCT"), text="Hi!"), Sentence(("Yo",), ("X",))], handle)
    assert handle.getvalue() == ("# text = Hi!\n"
                                 "1\tHi\t_\tINTJ\t_\t_\t_\t_\t_\t_\n"
                                 "2\t!\t_\tPUNCT\t_\t_\t_\t_\t_\t_\n\n"
                                 "1\tYo\t_\tX\t_\t_\t_\t_\t_\t_\n\n")


def test_conllu_from_a_column_corpus_keeps_its_comments(write_file, tmp_path):
    source = write_file("u.iob2", "# sent_id = a-1\n# text = in tampa\n1\tin\tO\t-\t-\n2\ttampa\tB-LOC\t-\tx\n")
    sentences = list(read_columns(source))
    path = write_conllu_file(tmp_path / "out.conllu", sentences, "xpos")
    assert path.read_text().splitlines()[:3] == ["# sent_id = a-1", "# text = in tampa",
                                                 "1\tin\t_\t_\tO\t_\t_\t_\t_\t_"]
    (back,) = read_conllu(path, "xpos")
    assert (back.tokens, back.labels, back.sent_id, back.text) == (("in", "tampa"), ("O", "B-LOC"), "a-1", "in tampa")


def test_conllu_without_labels_writes_rows_as_they_stand(ewt_head):
    handle = io.StringIO()
    write_conllu([ewt_head[0].with_labels(None)], handle)
    token_lines = [line for line in handle.getvalue().splitlines() if line and not line.startswith("#")]
    assert token_lines == ["\t".join(row) for row in ewt_head[0].rows]


def test_columns_output():
    handle = io.StringIO()
    write_columns([Sentence(("New", "York"), ("B-LOC", "I-LOC")), Sentence(("hi",))], handle)
    assert handle.getvalue() == "New\tB-LOC\nYork\tI-LOC\n\nhi\tO\n\n"


def test_columns_round_trip_of_real_sentences(data_dir, tmp_path):
    source = list(read_columns(data_dir / "wnut17" / "emerging.dev.conll"))[:80]
    assert any(t.startswith("#") for s in source for t in s.tokens)  # hashtags survive the trip
    with atomic_output(tmp_path / "out.conll") as handle:
        write_columns(source, handle)
    back = list(read_columns(tmp_path / "out.conll"))
    assert [(s.tokens, s.labels) for s in back] == [(s.tokens, s.labels) for s in source]


def test_columns_refuse_labels_of_the_wrong_length():
    with pytest.raises(ValueError):
        write_columns([Sentence(("a", "b"), ("O",))], io.StringIO())


def test_jsonl():
    handle = io.StringIO()
    records = [{"id": 1, "text": "naïve 👩‍👩‍👧", "spans": [{"label": "PER", "start": 0, "end": 1}]},
               {"id": "x"}]
    write_jsonl(records, handle)
    lines = handle.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 3
    assert [json.loads(line) for line in lines[:2]] == records
    assert "naïve 👩‍👩‍👧" in lines[0]  # not \\u-escaped
    write_jsonl([], empty := io.StringIO())
    assert empty.getvalue() == ""


def test_atomic_output_writes_and_creates_directories(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.txt"
    with atomic_output(target) as handle:
        handle.write("done\r\nnaïve\n")
    assert target.read_bytes() == "done\r\nnaïve\n".encode()  # UTF-8, newlines untranslated
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_output_replaces_an_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old and longer\n")
    with atomic_output(str(target)) as handle:
        handle.write("new\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_atomic_output_leaves_no_file_and_no_temp_file_on_failure(tmp_path, error):
    target = tmp_path / "out.jsonl"
    with pytest.raises(type(error)):
        with atomic_output(target) as handle:
            handle.write("x" * 1_000_000)  # past any buffer: bytes are on disk in the temp file
            handle.flush()
            assert len(os.listdir(tmp_path)) == 1  # the temp file
            raise error
    assert os.listdir(tmp_path) == []


def test_atomic_output_leaves_an_existing_file_intact_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("previous results\n")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            write_jsonl([{"id": 1}], handle)
            handle.write("half of the new res")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "previous results\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


@pytest.mark.parametrize("path", [None, "-"])
def test_atomic_output_to_stdout(capsys, tmp_path, path):
    with atomic_output(path) as handle:
        handle.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
    assert os.listdir(tmp_path) == []


def test_atomic_write_text_and_bytes(tmp_path):
    atomic_write_text(tmp_path / "a" / "t.txt", "héllo\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a" / "t.txt").read_bytes() == "héllo\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sorted(os.listdir(tmp_path)) == ["a", "b.bin"] and os.listdir(tmp_path / "a") == ["t.txt"]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_output_gives_files_the_usual_mode(tmp_path, umask_022):
    """Not mkstemp's 0600, which a server running as another user could not read."""
    with atomic_output(tmp_path / "out.txt") as handle:
        handle.write("x\n")
    atomic_write_bytes(tmp_path / "weights.bin", b"\x00")
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "weights.bin").stat().st_mode & 0o777 == 0o644
