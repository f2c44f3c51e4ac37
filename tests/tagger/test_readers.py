"""Readers: CoNLL-U, column files (CoNLL-2003, WNUT-17, Universal NER), layout and format
detection, and every malformed-corpus error with its file and line."""

from __future__ import annotations

import pytest

from tagger.config import CorpusFormat
from tagger.corpus import CorpusError
from tagger.readers import detect_format, detect_layout, load_corpus, read_columns, read_conllu

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

UNER = """# sent_id = a-1
# text = where in tampa bay
1\twhere\tO\t-\t-
2\tin\tO\t-\t-
3\ttampa\tB-LOC\t-\tstephen
4\tbay\tI-LOC\t-\tstephen

# sent_id = a-2
1\tBob\tB-PER\t-\t-
"""

WNUT = "#hashtag\tO\nNew\tB-location\nYork\tI-location\n\t\n@user\tO\n"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_conllu_skips_multiword_and_empty_nodes(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    first, second = read_conllu(path)
    assert first.tokens == ("Do", "n't", "go", ".")
    assert first.labels == ("AUX", "PART", "VERB", "PUNCT")
    assert (first.sent_id, first.text, first.line) == ("s1", "Don't go.", 1)
    assert first.token_lines == (5, 6, 7, 9)
    assert second.tokens == ("Hi",) and second.line == 11
    assert [s.labels for s in read_conllu(path, "xpos")] == [("VBP", "RB", "VB", "."), ("UH",)]
    assert [s.labels for s in read_conllu(path, None)] == [None, None]


def test_conll2003_layout_and_iob1_detected(tmp_path):
    path = write(tmp_path, "eng.train", CONLL2003)
    assert detect_format(path) == "columns"
    layout = detect_layout(path)
    assert (layout.columns, layout.token_column, layout.label_column, layout.delimiter) == (4, 1, 4, None)
    corpus = load_corpus(path)
    assert (corpus.kind, corpus.scheme) == ("span", "iob1")
    assert [s.tokens for s in corpus.sentences] == [("EU", "rejects", "German", "call", "."),
                                                   ("Peter", "Blackburn"), ("BRUSSELS", "1996-08-22")]
    assert corpus.sentences[0].labels == ("B-ORG", "O", "B-MISC", "O", "O")
    assert corpus.sentences[1].labels == ("B-PER", "I-PER")
    pos = load_corpus(path, CorpusFormat(label_column=2))
    assert pos.kind == "tag" and pos.sentences[0].labels == ("NNP", "VBZ", "JJ", "NN", ".")


def test_universal_ner_layout(tmp_path):
    path = write(tmp_path, "x.iob2", UNER)
    layout = detect_layout(path)
    assert (layout.columns, layout.token_column, layout.label_column, layout.delimiter) == (5, 2, 3, "\t")
    corpus = load_corpus(path)
    assert corpus.sentences[0].tokens == ("where", "in", "tampa", "bay")
    assert corpus.sentences[0].labels == ("O", "O", "B-LOC", "I-LOC")
    assert (corpus.sentences[0].sent_id, corpus.sentences[0].text) == ("a-1", "where in tampa bay")
    assert corpus.sentences[1].line == 8 and corpus.sentences[1].token_lines == (9,)


def test_wnut_hashtags_are_tokens_and_blank_tab_lines_split(tmp_path):
    path = write(tmp_path, "w.conll", WNUT)
    corpus = load_corpus(path)
    assert [s.tokens for s in corpus.sentences] == [("#hashtag", "New", "York"), ("@user",)]
    assert corpus.sentences[0].labels == ("O", "B-location", "I-location")


def test_explicit_columns_and_unlabelled_reading(tmp_path):
    path = write(tmp_path, "c.txt", "1 a X O\n2 b Y B-T\n")
    layout = detect_layout(path, token_column=2, label_column=3)
    assert [(s.tokens, s.labels) for s in read_columns(path, layout)] == [(("a", "b"), ("X", "Y"))]
    assert [s.labels for s in read_columns(path, layout, unlabelled=True)] == [None]


def test_crlf_and_bom(tmp_path):
    path = write(tmp_path, "w.conll", ("\ufeff" + WNUT).replace("\n", "\r\n"))
    corpus = load_corpus(path)
    assert corpus.sentences[0].tokens[0] == "#hashtag"
    assert corpus.sentences[0].labels[-1] == "I-location"


@pytest.mark.parametrize("text, fmt, line, message", [
    ("a\tO\nb\tO\tx\n", {}, 2, "expected 2 columns, found 3"),
    ("a\tO\n\tO\nc\tO\n", {"token_column": 1, "label_column": 2}, 2, "empty token"),
    ("a\tO\nb\tS-PER\n", {"scheme": "iob2"}, 2, "does not fit the IOB2 scheme"),
    ("a\tB-PER\n\nb\tB_PER\nc\tO\n", {}, 3, "is not 'O' or PREFIX-TYPE"),
    ("a\tO\nb\tB-PER\n\nc\tI-PER\nd\tU-PER\n", {"scheme": "iobes"}, 5, "does not fit the IOBES scheme"),
    ("", {}, 1, "no token lines"),
])
def test_column_errors_name_file_and_line(tmp_path, text, fmt, line, message):
    path = write(tmp_path, "bad.conll", text)
    with pytest.raises(CorpusError) as error:
        load_corpus(path, CorpusFormat(**fmt))
    assert error.value.line == line and message in error.value.message
    assert str(error.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("text, line, message", [
    ("1\ta\ta\tX\tX\t_\t0\troot\t_\n", 1, "expected 10 tab-separated columns, found 9"),
    ("1\ta\ta\tX\tX\t_\t0\troot\t_\t_\n3\tb\tb\tX\tX\t_\t0\troot\t_\t_\n", 2, "out of sequence"),
    ("1\t \ta\tX\tX\t_\t0\troot\t_\t_\n", 1, "empty token"),
    ("1\ta\ta\t_\tX\t_\t0\troot\t_\t_\n", 1, "missing UPOS label"),
    ("# sent_id = x\n\n1\ta\ta\tX\tX\t_\t0\troot\t_\t_\n", 2, "comment lines with no token lines"),
    ("x\ta\ta\tX\tX\t_\t0\troot\t_\t_\n", 1, "is not an integer"),
])
def test_conllu_errors(tmp_path, text, line, message):
    path = write(tmp_path, "bad.conllu", text)
    with pytest.raises(CorpusError) as error:
        list(read_conllu(path))
    assert (error.value.line, error.value.path) == (line, str(path))
    assert message in error.value.message


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "bad.conll", b"a\tO\n\nb\xc3\x28\tO\n")
    with pytest.raises(CorpusError, match=r"bad.conll:3: invalid UTF-8"):
        load_corpus(path)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="cannot open"):
        list(read_conllu(tmp_path / "nope.conllu"))


def test_label_column_outside_the_file(tmp_path):
    path = write(tmp_path, "w.conll", WNUT)
    with pytest.raises(CorpusError, match="label column 5 is outside the file's 2 columns"):
        load_corpus(path, CorpusFormat(label_column=5))


@pytest.mark.parametrize("relative, sentences, tokens, kind, scheme, labels", [
    ("ud-english-ewt/en_ewt-ud-dev.conllu", 2001, 25147, "tag", None, 17),
    ("uner-english-ewt/en_ewt-ud-dev.iob2", 2001, 25149, "span", "iob2", 7),
    ("wnut17/emerging.dev.conll", 1009, 15733, "span", "iob2", 13),
    ("wnut17/wnut17train.conll", 3394, 62730, "span", "iob2", 13),
])
def test_real_corpora(shared_data, relative, sentences, tokens, kind, scheme, labels):
    corpus = load_corpus(shared_data / relative)
    assert len(corpus.sentences) == sentences
    assert sum(len(s.tokens) for s in corpus.sentences) == tokens
    assert (corpus.kind, corpus.scheme, len(corpus.labels)) == (kind, scheme, labels)
