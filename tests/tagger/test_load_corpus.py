"""load_corpus and its helpers: format detection, kind and scheme detection, conversion to IOB2,
errors that name the file and line, and the real corpora."""

from __future__ import annotations

import pytest

from tagger.config import CorpusFormat
from tagger.data.corpus import CorpusError
from tagger.data.readers import detect_format, load_corpus, read_sentences

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Smith NNP I-NP B-PER
said VBD I-VP O

-DOCSTART- -X- -X- O

BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O
"""

CONLLU = "# sent_id = s1\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_\n"
UNER = "# sent_id = a-1\n1\tin\tO\t-\t-\n2\ttampa\tB-LOC\t-\tx\n3\tbay\tI-LOC\t-\tx\n"


def conllu_row(word_id):
    return f"{word_id}\tw\tw\tX\tXX\t_\t0\troot\t_\t_"


@pytest.mark.parametrize("name, text, expected", [
    ("a.conllu", "a\tO\n", "conllu"),                    # the name decides
    ("a.txt", CONLLU, "conllu"),
    ("a.txt", "1-2\tdon't" + "\t_" * 8 + "\n" + conllu_row(1) + "\n", "conllu"),
    ("a.txt", "\n" + conllu_row(1) + "\n", "conllu"),
    ("a.iob2", UNER, "columns"),
    ("a.conll", "a\tO\n", "columns"),
    ("a.txt", "w\t" * 9 + "w\n", "columns"),              # 10 columns but no word id
    ("a.txt", "", "columns"),
])
def test_detect_format(write_file, name, text, expected):
    assert detect_format(write_file(name, text)) == expected


@pytest.mark.parametrize("fmt, expected", [
    (CorpusFormat(), ("INTJ", "PUNCT")),
    (CorpusFormat(label_column="xpos"), ("UH", ".")),
    (CorpusFormat(label_column=4), ("INTJ", "PUNCT")),
    (CorpusFormat(label_column=5), ("UH", ".")),
    (CorpusFormat(format="conllu", label_column="upos"), ("INTJ", "PUNCT")),
])
def test_read_sentences_conllu_label_columns(write_file, fmt, expected):
    (sentence,) = read_sentences(write_file("a.txt", CONLLU), fmt)
    assert sentence.labels == expected and sentence.sent_id == "s1"


def test_read_sentences_unlabelled(write_file):
    assert [s.labels for s in read_sentences(write_file("a.conllu", CONLLU), CorpusFormat(), labelled=False)] == [None]
    assert [s.labels for s in read_sentences(write_file("a.iob2", UNER), CorpusFormat(), labelled=False)] == [None]


@pytest.mark.parametrize("name, text, fmt, message", [
    ("a.conllu", CONLLU, CorpusFormat(label_column=3), "CoNLL-U labels come from column 4 (upos) or 5 (xpos)"),
    ("a.iob2", UNER, CorpusFormat(label_column="upos"), "label column 'upos' only applies to CoNLL-U files"),
])
def test_read_sentences_rejects_label_columns_that_do_not_fit(write_file, name, text, fmt, message):
    path = write_file(name, text)
    with pytest.raises(CorpusError) as error:
        list(read_sentences(path, fmt))
    assert (error.value.path, error.value.line, error.value.message) == (str(path), 0, message)


def test_conll2003_becomes_iob2(write_file):
    corpus = load_corpus(write_file("eng.train", CONLL2003))
    assert (corpus.kind, corpus.scheme) == ("span", "iob1")
    assert [s.tokens for s in corpus.sentences] == [("EU", "rejects", "German", "call", "."),
                                                   ("Peter", "Blackburn", "Smith", "said"), ("BRUSSELS", "1996-08-22")]
    assert [s.labels for s in corpus.sentences] == [("B-ORG", "O", "B-MISC", "O", "O"),
                                                   ("B-PER", "I-PER", "B-PER", "O"), ("B-LOC", "O")]
    assert corpus.labels == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER", "O"]
    assert corpus.sentences[1].token_lines == (9, 10, 11, 12)


def test_conll2003_other_columns(write_file):
    path = write_file("eng.train", CONLL2003)
    pos = load_corpus(path, CorpusFormat(label_column=2))
    assert (pos.kind, pos.scheme) == ("tag", None) and pos.sentences[0].labels == ("NNP", "VBZ", "JJ", "NN", ".")
    chunks = load_corpus(path, CorpusFormat(label_column=3))
    assert (chunks.kind, chunks.scheme) == ("span", "iob1") and chunks.sentences[0].labels[:2] == ("B-NP", "B-VP")


@pytest.mark.parametrize("labels, fmt, scheme, expected", [
    ("B-X E-X S-Y O", CorpusFormat(), "iobes", "B-X I-X B-Y O"),
    ("B-X L-X U-Y O", CorpusFormat(), "bilou", "B-X I-X B-Y O"),
    ("I-X I-X B-X O", CorpusFormat(), "iob1", "B-X I-X B-X O"),
    ("O I-X I-X O", CorpusFormat(), "iob1", "O B-X I-X O"),
    ("O I-X I-X O", CorpusFormat(scheme="iob2"), "iob2", "O B-X I-X O"),  # ill-formed IOB2 repaired
    ("B-X I-X B-X O", CorpusFormat(scheme="iob1"), "iob1", "B-X I-X B-X O"),
    ("B-X I-X E-X O", CorpusFormat(scheme="bioes"), "iobes", "B-X I-X I-X O"),
    ("B-X I-X I-X O", CorpusFormat(scheme="iobes"), "iobes", "B-X I-X I-X O"),
])
def test_span_schemes_become_iob2(write_file, labels, fmt, scheme, expected):
    path = write_file("f.conll", "".join(f"t{i}\t{label}\n" for i, label in enumerate(labels.split())))
    corpus = load_corpus(path, fmt)
    assert (corpus.kind, corpus.scheme) == ("span", scheme)
    assert [s.labels for s in corpus.sentences] == [tuple(expected.split())]


@pytest.mark.parametrize("text, fmt, kind, expected_kind, expected_labels", [
    ("a\tO\nb\tO\n", CorpusFormat(), None, "tag", ("O", "O")),          # all O: nothing says span
    ("a\tO\nb\tO\n", CorpusFormat(), "span", "span", ("O", "O")),
    ("a\tO\nb\tO\n", CorpusFormat(scheme="iob2"), None, "span", ("O", "O")),
    ("a\tNN\nb\tB-X\n", CorpusFormat(), None, "tag", ("NN", "B-X")),    # no O: not a span corpus
    ("a\tO\nb\tI-X\n", CorpusFormat(), "tag", "tag", ("O", "I-X")),     # tags are kept as written
])
def test_kind_detection(write_file, text, fmt, kind, expected_kind, expected_labels):
    corpus = load_corpus(write_file("f.conll", text), fmt, kind=kind)
    assert corpus.kind == expected_kind and corpus.sentences[0].labels == expected_labels
    assert corpus.scheme == ("iob2" if expected_kind == "span" else None)


@pytest.mark.parametrize("name, content", [
    ("w.conll", "\ufeff#tag\tO\r\nNew\tB-LOC\r\nYork\tI-LOC\r\n\r\nhi\tO\r\n"),
    ("w.iob2", "\ufeff# sent_id = 1\r\n1\t#tag\tO\t-\t-\r\n2\tNew\tB-LOC\t-\t-\r\n3\tYork\tI-LOC\t-\t-\r\n\r\n"
               "# sent_id = 2\r\n1\thi\tO\t-\t-\r\n"),
])
def test_crlf_and_bom(write_file, name, content):
    corpus = load_corpus(write_file(name, content))
    assert [(s.tokens, s.labels) for s in corpus.sentences] == [
        (("#tag", "New", "York"), ("O", "B-LOC", "I-LOC")), (("hi",), ("O",))]


def test_crlf_and_bom_in_conllu(write_file):
    corpus = load_corpus(write_file("a.conllu", ("\ufeff" + CONLLU).replace("\n", "\r\n")))
    assert corpus.kind == "tag" and corpus.sentences[0].sent_id == "s1"
    assert corpus.sentences[0].labels == ("INTJ", "PUNCT")


@pytest.mark.parametrize("name, content, fmt, line, message", [
    # column count, empty token
    ("f.conll", "a\tO\nb\tB-X\n\nc\tO\td\n", CorpusFormat(), 4, "expected 2 columns, found 3"),
    ("f.conll", "a\tO\n\tO\nc\tO\n", CorpusFormat(token_column=1, label_column=2), 2, "empty token"),
    ("f.conllu", "\n".join(map(conllu_row, (1, 2))) + "\n\n" + conllu_row(1)[:-2] + "\n", CorpusFormat(), 4,
     "expected 10 tab-separated columns, found 9"),
    # labels that fit no scheme
    ("f.conll", "a\tO\nb\tS-PER\n", CorpusFormat(scheme="iob2"), 2,
     "label 'S-PER' does not fit the IOB2 scheme (scheme IOB2)"),
    ("f.conll", "a\tB-PER\n\nb\tB_PER\nc\tO\n", CorpusFormat(), 3, "label 'B_PER' is not 'O' or PREFIX-TYPE"),
    ("f.conll", "a\tB-PER\n\nb\tO\nc\tB_PER\n", CorpusFormat(scheme="iob2"), 4, "is not 'O' or PREFIX-TYPE"),
    ("f.conll", "a\tO\nb\tB-PER\n\nc\tI-PER\nd\tU-PER\n", CorpusFormat(scheme="iobes"), 5,
     "label 'U-PER' does not fit the IOBES scheme"),
    ("f.conll", "a\tO\nb\tE-PER\n", CorpusFormat(scheme="iob1"), 2, "does not fit the IOB1 scheme"),
    ("f.conll", "a\tO\nb\tB-PER\nc\tNN\n", CorpusFormat(), 3, "label 'NN' is not 'O' or PREFIX-TYPE"),
    ("f.conll", "a\tO\nb\tB-X\n\nc\tO\nd\tE-X\n\ne\tU-X\n", CorpusFormat(), 5, "'E-X' does not fit"),  # mixed
    ("f.iob2", "# sent_id = 1\n1\ta\tO\t-\t-\n\n# sent_id = 2\n1\tb\tB-X\t-\t-\n2\tc\tS-X\t-\t-\n",
     CorpusFormat(scheme="iob2"), 6, "'S-X' does not fit the IOB2 scheme"),
    # nothing to read
    ("f.conllu", "", CorpusFormat(), 0, "no sentences found"),
    ("f.conllu", "# sent_id = 1\n", CorpusFormat(), 0, "no sentences found"),
    ("f.conll", "\n\n", CorpusFormat(), 1, "no token lines found"),
    # bytes
    ("f.conll", b"a\tO\n\nb\xc3\x28\tO\n", CorpusFormat(), 3, "invalid UTF-8 at byte 1 of the line"),
    ("f.conllu", (conllu_row(1) + "\n" + conllu_row(2) + "\n").encode() + b"3\t\xe9\tw" + b"\t_" * 7 + b"\n",
     CorpusFormat(), 3, "invalid UTF-8"),
])
def test_errors_name_the_file_and_line(write_file, name, content, fmt, line, message):
    path = write_file(name, content)
    with pytest.raises(CorpusError) as error:
        load_corpus(path, fmt)
    assert (error.value.path, error.value.line) == (str(path), line)
    assert message in error.value.message
    assert str(error.value) == f"{path}:{line}: {error.value.message}"


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="cannot open") as error:
        load_corpus(tmp_path / "nope.conll")
    assert error.value.path == str(tmp_path / "nope.conll")


@pytest.mark.parametrize("kind", [None, "tag", "span"])
def test_a_file_without_labels_is_an_error(write_file, kind):
    """Once loaded as sentences with labels None (or () for kind='span', shorter than the tokens)."""
    path = write_file("tokens.txt", "a\nb\n\nc\n")
    with pytest.raises(CorpusError, match="no label column") as error:
        load_corpus(path, kind=kind)
    assert (error.value.path, error.value.line) == (str(path), 1)


@pytest.mark.parametrize("relative, sentences, tokens, kind, scheme, types", [
    ("ud-english-ewt/en_ewt-ud-dev.conllu", 2001, 25147, "tag", None, None),
    ("uner-english-ewt/en_ewt-ud-dev.iob2", 2001, 25149, "span", "iob2", ["LOC", "ORG", "PER"]),
    ("wnut17/emerging.dev.conll", 1009, 15733, "span", "iob2",
     ["corporation", "creative-work", "group", "location", "person", "product"]),
])
def test_real_dev_corpora(data_dir, relative, sentences, tokens, kind, scheme, types):
    corpus = load_corpus(data_dir / relative)
    assert len(corpus.sentences) == sentences
    assert sum(len(s.tokens) for s in corpus.sentences) == tokens
    assert all(len(s.labels) == len(s.tokens) for s in corpus.sentences)
    assert (corpus.kind, corpus.scheme) == (kind, scheme)
    if types is None:
        assert len(corpus.labels) == 17 and "PROPN" in corpus.labels
    else:
        assert corpus.labels == sorted(["O"] + [f"{p}-{t}" for t in types for p in "BI"])


def test_real_universal_ner_keeps_its_comments(data_dir):
    corpus = load_corpus(data_dir / "uner-english-ewt" / "en_ewt-ud-dev.iob2")
    first = corpus.sentences[0]
    assert first.sent_id == "answers-20070404104007AAY1Chs_ans-0001" and first.line == 1
    assert first.tokens[:2] == ("where", "can") and first.text.startswith("where can I get morcillas")
    assert len({s.sent_id for s in corpus.sentences}) == 2001


def test_real_wnut_hashtags_are_tokens(data_dir):
    path = data_dir / "wnut17" / "emerging.dev.conll"
    hashtag_lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    corpus = load_corpus(path)
    assert len(hashtag_lines) == 22
    assert sum(token.startswith("#") for s in corpus.sentences for token in s.tokens) == len(hashtag_lines)
    assert all(s.comments == () for s in corpus.sentences)


@pytest.mark.parametrize("relative, count", [
    ("ud-english-ewt/en_ewt-ud-dev.conllu", 120),
    ("uner-english-ewt/en_ewt-ud-dev.iob2", 120),
    ("wnut17/emerging.dev.conll", 120),
])
def test_a_slice_reads_as_the_start_of_the_whole(data_dir, write_file, relative, count):
    source = data_dir / relative
    blocks = source.read_text(encoding="utf-8").split("\n\n")[:count]
    head = load_corpus(write_file(source.name, "\n\n".join(blocks) + "\n"))
    whole = load_corpus(source)
    assert (head.kind, head.scheme) == (whole.kind, whole.scheme)
    assert head.sentences == whole.sentences[:count]  # lines included: the slice starts where the file does
