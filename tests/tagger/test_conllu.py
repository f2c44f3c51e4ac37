"""CoNLL-U reader: syntactic words only, UPOS or XPOS labels, comments, and every malformed line."""

from __future__ import annotations

import pytest

from tagger.data.corpus import CorpusError
from tagger.data.readers import read_conllu

CONLLU = """# newdoc id = d1
# sent_id = s1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\tSpaceAfter=No

# sent_id = s2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def row(word_id, form="w", upos="X", xpos="XX"):
    return f"{word_id}\t{form}\t{form.lower()}\t{upos}\t{xpos}\t_\t0\troot\t_\t_\n"


def test_skips_multiword_tokens_and_empty_nodes(write_file):
    first, second = read_conllu(write_file("a.conllu", CONLLU))
    assert first.tokens == ("Do", "n't", "go", ".")
    assert [r[0] for r in first.rows] == ["1", "2", "3", "4"]
    assert first.token_lines == (5, 6, 7, 9)
    assert second.tokens == ("Hi",) and second.token_lines == (12,)


def test_keeps_sent_id_text_comments_and_rows(write_file):
    first, second = read_conllu(write_file("a.conllu", CONLLU))
    assert (first.sent_id, first.text, first.line) == ("s1", "Don't go.", 1)
    assert first.comments == ("newdoc id = d1", "sent_id = s1", "text = Don't go.")
    assert first.rows[3] == ("4", ".", ".", "PUNCT", ".", "_", "3", "punct", "_", "SpaceAfter=No")
    assert (second.sent_id, second.text, second.line) == ("s2", None, 11)


@pytest.mark.parametrize("label, expected", [
    ("upos", [("AUX", "PART", "VERB", "PUNCT"), ("INTJ",)]),
    ("xpos", [("VBP", "RB", "VB", "."), ("UH",)]),
    (None, [None, None]),
])
def test_upos_xpos_or_no_labels(write_file, label, expected):
    assert [s.labels for s in read_conllu(write_file("a.conllu", CONLLU), label)] == expected


@pytest.mark.parametrize("text", [
    row(1, "a") + "\n\n\n" + row(1, "b") + "\n",      # several blank lines between sentences
    row(1, "a") + "\n" + row(1, "b"),                 # no newline at the end
    row(1, "a") + "  \n" + row(1, "b") + "\n",        # a blank line of spaces
    "\n\n" + row(1, "a") + "\n" + row(1, "b"),        # blank lines first
])
def test_sentence_boundaries(write_file, text):
    assert [s.tokens for s in read_conllu(write_file("a.conllu", text))] == [("a",), ("b",)]


def test_crlf_and_bom(write_file):
    path = write_file("a.conllu", ("\ufeff" + CONLLU).replace("\n", "\r\n"))
    first, second = read_conllu(path)
    assert first.comments[0] == "newdoc id = d1" and first.text == "Don't go."
    assert first.rows[3][-1] == "SpaceAfter=No" and second.labels == ("INTJ",)


def test_unlabelled_reading_accepts_missing_labels(write_file):
    path = write_file("a.conllu", row(1, "a", upos="_", xpos="_"))
    assert [(s.tokens, s.labels) for s in read_conllu(path, None)] == [(("a",), None)]


@pytest.mark.parametrize("text, label, line, message", [
    (row(1).replace("\t_\t_\n", "\t_\n"), "upos", 1, "expected 10 tab-separated columns, found 9"),
    (row(1) + row(2).replace("\t", " "), "upos", 2, "expected 10 tab-separated columns, found 1"),
    (row(1) + row(3), "upos", 2, "word id 3 out of sequence (expected 2)"),
    ("\n" + row(2), "upos", 2, "word id 2 out of sequence (expected 1)"),
    (row(1) + "\n" + row("x"), "upos", 3, "word id 'x' is not an integer"),
    (row(1, " "), "upos", 1, "empty token (FORM column)"),
    (row(1) + row(2, "b", upos="_"), "upos", 2, "missing UPOS label"),
    (row(1, xpos=""), "xpos", 1, "missing XPOS label"),
    (row(1) + "# sent_id = x\n" + row(2), "upos", 2, "comment line inside a sentence"),
    ("# sent_id = x\n\n" + row(1), "upos", 2, "comment lines with no token lines after them"),
])
def test_errors_name_the_file_and_line(write_file, text, label, line, message):
    path = write_file("bad.conllu", text)
    with pytest.raises(CorpusError) as error:
        list(read_conllu(path, label))
    assert (error.value.path, error.value.line) == (str(path), line)
    assert message in error.value.message
    assert str(error.value) == f"{path}:{line}: {error.value.message}"


def test_invalid_utf8_names_the_line(write_file):
    path = write_file("bad.conllu", (row(1) + "\n" + row(1)).encode() + b"1\tb\xff\tb\tX\tX\t_\t0\troot\t_\t_\n")
    with pytest.raises(CorpusError) as error:
        list(read_conllu(path))
    assert (error.value.path, error.value.line) == (str(path), 4)
    assert "invalid UTF-8" in error.value.message


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="cannot open") as error:
        list(read_conllu(tmp_path / "nope.conllu"))
    assert error.value.path == str(tmp_path / "nope.conllu")


def test_real_ewt_dev(data_dir):
    path = data_dir / "ud-english-ewt" / "en_ewt-ud-dev.conllu"
    sentences = list(read_conllu(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(sentences) == 2001 == sum(line.startswith("# sent_id") for line in lines)
    assert sum(len(s.tokens) for s in sentences) == 25147
    assert any("-" in line.split("\t")[0] for line in lines)  # the file has multiword tokens ...
    assert any("." in line.split("\t")[0] for line in lines if not line.startswith("#"))  # ... and empty nodes
    assert all([r[0] for r in s.rows] == [str(i) for i in range(1, len(s.tokens) + 1)] for s in sentences)
    assert all(lines[n - 1].split("\t")[1] == token for s in sentences for n, token in zip(s.token_lines, s.tokens))
    assert len({s.sent_id for s in sentences}) == 2001 and all(s.text for s in sentences)
    assert len({label for s in sentences for label in s.labels}) == 17
    xpos = list(read_conllu(path, "xpos"))
    assert [s.tokens for s in xpos] == [s.tokens for s in sentences]
    assert {"NN", "NNP", "VBZ", "-LRB-"} <= {label for s in xpos for label in s.labels}
