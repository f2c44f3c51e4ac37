"""Column files (CoNLL-2003, WNUT-17, Universal NER): layout detection, reading, errors."""

from __future__ import annotations

import pytest

from tagger.data.corpus import CorpusError
from tagger.data.readers import ColumnLayout, detect_layout, read_columns

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O
"""

UNER = """# newdoc id = a
# sent_id = a-1
# text = where in tampa bay
1\twhere\tO\t-\t-
2\tin\tO\t-\t-
3\ttampa\tB-LOC\t-\tstephen
4\tbay\tI-LOC\t-\tstephen

# sent_id = a-2
1\tBob\tB-PER\t-\t-
"""

WNUT = "#hashtag\tO\nNew\tB-location\nYork\tI-location\n#\tO\n\n@user\tO\n#foo\tB-product\n"


@pytest.mark.parametrize("text, layout", [
    (CONLL2003, ColumnLayout(4, 1, 4, None)),
    (UNER, ColumnLayout(5, 2, 3, "\t")),
    (WNUT, ColumnLayout(2, 1, 2, "\t")),
    ("a NN\nb VBZ\n", ColumnLayout(2, 1, 2, None)),                 # POS tags: the last column
    ("a\tNN\tB-X\tO\nb\tVB\tO\tO\n", ColumnLayout(4, 1, 3, "\t")),  # the last span column with a non-O
    ("1\ta\tNN\n2\tb\tVB\n", ColumnLayout(3, 2, 3, "\t")),          # running ids: the token is column 2
    ("a\nb\n\nc\n", ColumnLayout(1, 1, None, None)),
    ("a O\nb\tB-X\nc\tO\n", ColumnLayout(2, 1, 2, "\t")),             # any tab makes the file tab-separated
])
def test_detect_layout(write_file, text, layout):
    assert detect_layout(write_file("f.txt", text)) == layout


def test_detect_layout_uses_the_most_common_column_count(write_file):
    path = write_file("f.txt", "a\tO\nb\tO\nc\tB-X\nodd\tline\there\n")
    assert detect_layout(path) == ColumnLayout(2, 1, 2, "\t")


@pytest.mark.parametrize("token, label, expected", [
    (2, 3, ColumnLayout(4, 2, 3, None)),
    (None, 2, ColumnLayout(4, 1, 2, None)),
    (3, None, ColumnLayout(4, 3, 4, None)),
])
def test_detect_layout_keeps_given_columns(write_file, token, label, expected):
    path = write_file("f.txt", "a X I-NP O\nb Y B-NP B-T\n")
    assert detect_layout(path) == ColumnLayout(4, 1, 4, None)
    assert detect_layout(path, token, label) == expected


@pytest.mark.parametrize("token, label, message", [
    (None, 5, "label column 5 is outside the file's 4 columns"),
    (7, None, "token column 7 is outside the file's 4 columns"),
    (1, 0, "label column 0 is outside the file's 4 columns"),
])
def test_detect_layout_rejects_columns_outside_the_file(write_file, token, label, message):
    path = write_file("f.txt", "1 a X O\n2 b Y B-T\n")
    with pytest.raises(CorpusError, match=message) as error:
        detect_layout(path, token, label)
    assert (error.value.path, error.value.line) == (str(path), 1)


@pytest.mark.parametrize("text", ["", "\n\n", "# sent_id = 1\n\n", "-DOCSTART- -X- O\n\n"])
def test_detect_layout_needs_token_lines(write_file, text):
    path = write_file("f.txt", text)
    with pytest.raises(CorpusError, match="no token lines found") as error:
        detect_layout(path)
    assert (error.value.path, error.value.line) == (str(path), 1)


def test_conll2003_docstart_lines_split_documents(write_file):
    sentences = list(read_columns(write_file("eng.train", CONLL2003)))
    assert [s.tokens for s in sentences] == [("EU", "rejects", "German", "call", "."),
                                            ("Peter", "Blackburn"), ("BRUSSELS", "1996-08-22")]
    assert sentences[0].labels == ("I-ORG", "O", "I-MISC", "O", "O")  # as written: IOB1
    assert [(s.line, s.token_lines[0]) for s in sentences] == [(3, 3), (9, 9), (14, 14)]
    assert all(s.sent_id is None and s.comments == () and s.rows is None for s in sentences)


def test_universal_ner_comments_and_columns(write_file):
    first, second = read_columns(write_file("x.iob2", UNER))
    assert first.tokens == ("where", "in", "tampa", "bay")
    assert first.labels == ("O", "O", "B-LOC", "I-LOC")
    assert (first.sent_id, first.text, first.line, first.token_lines) == ("a-1", "where in tampa bay", 1, (4, 5, 6, 7))
    assert first.comments == ("newdoc id = a", "sent_id = a-1", "text = where in tampa bay")
    assert (second.sent_id, second.line, second.token_lines) == ("a-2", 9, (10,))


def test_hashtags_are_tokens_not_comments(write_file):
    first, second = read_columns(write_file("w.conll", WNUT))
    assert first.tokens == ("#hashtag", "New", "York", "#") and first.comments == ()
    assert first.labels == ("O", "B-location", "I-location", "O")
    assert second.tokens == ("@user", "#foo") and second.labels == ("O", "B-product")


def test_hashtags_in_a_space_separated_file(write_file):
    path = write_file("f.txt", "# sent_id = 7\n#tbt NN I-NP O\nrocks VBZ I-VP O\n")
    (sentence,) = read_columns(path)
    assert sentence.tokens == ("#tbt", "rocks") and sentence.sent_id == "7"  # the comment has 4 fields too


@pytest.mark.parametrize("text, tokens", [
    ("a\tO\n#x=1\tO\n", [("a", "#x=1")]),           # once read as a comment inside a sentence
    ("#x=1\tO\nb\tO\n", [("#x=1", "b")]),           # ... or as a comment before one
    ("#sent_id=1\na\tO\n", [("a",)]),               # a comment line of one field still is one
])
def test_hashtag_tokens_with_an_equals_sign_are_tokens(write_file, text, tokens):
    assert [s.tokens for s in read_columns(write_file("w.conll", text))] == tokens


@pytest.mark.parametrize("text", [
    "a\tO\n\t\nb\tO\n",     # a blank line holding a tab, as in WNUT-17
    "a\tO\n \nb\tO\n",
    "a\tO\n\n\n\nb\tO",     # several blank lines, no final newline
])
def test_blank_lines_with_whitespace_split_sentences(write_file, text):
    assert [s.tokens for s in read_columns(write_file("w.conll", text))] == [("a",), ("b",)]


def test_tab_fields_are_stripped_but_keep_inner_spaces(write_file):
    (sentence,) = read_columns(write_file("w.conll", "New York \t B-LOC\n"))
    assert sentence.tokens == ("New York",) and sentence.labels == ("B-LOC",)


def test_explicit_layout_and_unlabelled_reading(write_file):
    path = write_file("c.txt", "1 a X O\n2 b Y B-T\n")
    layout = detect_layout(path, token_column=2, label_column=3)
    assert [(s.tokens, s.labels) for s in read_columns(path, layout)] == [(("a", "b"), ("X", "Y"))]
    assert [(s.tokens, s.labels) for s in read_columns(path, layout, unlabelled=True)] == [(("a", "b"), None)]


def test_crlf_and_bom(write_file):
    path = write_file("w.conll", ("\ufeff" + UNER).replace("\n", "\r\n"))
    first, second = read_columns(path)
    assert first.comments[0] == "newdoc id = a" and first.text == "where in tampa bay"
    assert first.labels[-1] == "I-LOC" and second.tokens == ("Bob",)


@pytest.mark.parametrize("text, line, message", [
    ("a\tO\nb\tO\tx\n", 2, "expected 2 columns, found 3"),
    ("a\tO\nb\tO\n\nc\n", 4, "expected 2 columns, found 1"),
    ("EU NNP I-NP O\nrejects VBZ O\n", 2, "expected 4 columns, found 3"),
    ("a\tO\n\tO\nc\tO\n", 2, "empty token"),
    ("a\tO\n \tB-X\n", 2, "empty token"),
    ("a\tO\nb\t \n", 2, "empty label"),
    ("1\ta\tO\t-\t-\n# sent_id = 2\n2\tb\tO\t-\t-\n", 2, "comment line inside a sentence"),
    (b"a\tO\n\nb\xc3\x28\tO\n", 3, "invalid UTF-8"),
])
def test_errors_name_the_file_and_line(write_file, text, line, message):
    path = write_file("bad.conll", text)
    with pytest.raises(CorpusError) as error:
        list(read_columns(path))
    assert (error.value.path, error.value.line) == (str(path), line)
    assert message in error.value.message
    assert str(error.value) == f"{path}:{line}: {error.value.message}"


def test_invalid_utf8_past_the_layout_sample_names_the_line(write_file):
    path = write_file("big.conll", b"a\tO\n" * 25_000 + b"\xffb\tO\n")
    with pytest.raises(CorpusError, match="invalid UTF-8") as error:
        list(read_columns(path))
    assert error.value.line == 25_001
