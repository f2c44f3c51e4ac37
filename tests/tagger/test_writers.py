"""Writers: CoNLL-U with labels filled in, two-column, JSONL, atomic output."""

from __future__ import annotations

import io
import json

import pytest

from tagger.readers import read_columns, read_conllu
from tagger.writers import atomic_output, write_columns, write_conllu, write_jsonl


def test_conllu_round_trip_with_new_labels(shared_data, tmp_path):
    source = list(read_conllu(shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu"))[:50]
    relabelled = [s.with_labels(["X"] * len(s.tokens)) for s in source]
    with atomic_output(tmp_path / "out.conllu") as handle:
        write_conllu(relabelled, handle)
    back = list(read_conllu(tmp_path / "out.conllu"))
    assert [s.tokens for s in back] == [s.tokens for s in source]
    assert all(set(s.labels) == {"X"} for s in back)
    assert [s.sent_id for s in back] == [s.sent_id for s in source]
    assert [s.rows[0][2:3] + s.rows[0][5:] for s in back] == [s.rows[0][2:3] + s.rows[0][5:] for s in source]
    xpos = list(read_conllu(tmp_path / "out.conllu", "xpos"))
    assert [s.labels for s in xpos] == [tuple(r[4] for r in s.rows) for s in source]


def test_conllu_for_sentences_without_rows():
    from tagger.corpus import Sentence

    handle = io.StringIO()
    write_conllu([Sentence(("Hi", "!"), ("INTJ", "PUNCT"), text="Hi!")], handle, column="upos")
    assert handle.getvalue() == "# text = Hi!\n1\tHi\t_\tINTJ\t_\t_\t_\t_\t_\t_\n2\t!\t_\tPUNCT\t_\t_\t_\t_\t_\t_\n\n"


def test_columns_round_trip(shared_data, tmp_path):
    source = list(read_columns(shared_data / "wnut17" / "emerging.dev.conll"))[:40]
    with atomic_output(tmp_path / "out.conll") as handle:
        write_columns(source, handle)
    back = list(read_columns(tmp_path / "out.conll"))
    assert [(s.tokens, s.labels) for s in back] == [(s.tokens, s.labels) for s in source]


def test_jsonl_keeps_unicode():
    handle = io.StringIO()
    write_jsonl([{"id": 1, "text": "naïve 👩‍👩‍👧"}, {"id": 2}], handle)
    lines = handle.getvalue().splitlines()
    assert json.loads(lines[0])["text"] == "naïve 👩‍👩‍👧" and "👩" in lines[0] and len(lines) == 2


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("previous results\n")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            handle.write("half of the new res")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    with atomic_output(tmp_path / "new" / "file.txt") as handle:
        handle.write("done\n")
    assert (tmp_path / "new" / "file.txt").read_text() == "done\n"
