"""Property-based input to every reader: arbitrary bytes and near-valid corpora either read or
fail with CorpusError naming the file and a line inside it; nothing else escapes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.config import CorpusFormat
from tagger.data.corpus import CorpusError
from tagger.data.readers import load_corpus, read_sentences
from tagger.data.readers.conllu import read_conllu
from tagger.data.readers.documents import read_documents

CONLLU_LINE = st.one_of(
    st.just(""), st.just("# sent_id = x"), st.just("# text = Hi ."),
    st.just("1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_"), st.just("2\t.\t.\tPUNCT\t.\t_\t1\tpunct\t_\t_"),
    st.just("1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_"), st.just("3.1\tx\t_\t_\t_\t_\t_\t_\t_\t_"),
    st.text(max_size=40).map(lambda t: t.replace("\n", " ")),
    st.lists(st.text(max_size=5).map(lambda t: t.replace("\n", " ").replace("\t", " ")), min_size=1, max_size=12).map("\t".join),
)
COLUMN_LINE = st.one_of(
    st.just(""), st.just("-DOCSTART- -X- -X- O"), st.just("Paris\tB-LOC"), st.just("is\tO"), st.just("New\tI-ORG"),
    st.just("x\tE-PER"), st.just("y\tS-PER"), st.just("z\tB-"), st.just("#x=1\tO"),
    st.text(max_size=30).map(lambda t: t.replace("\n", " ")),
    st.lists(st.sampled_from(["a", "O", "B-X", "I-X", "\x00", "é", " ", "B-PER"]), min_size=1, max_size=4).map("\t".join),
)
RAW = st.binary(max_size=400)
FUZZ = settings(max_examples=150, deadline=None)


def _write(data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".txt")
    handle.write(data)
    handle.close()
    return Path(handle.name)


def _read_all(reader, path: Path) -> None:
    lines = path.read_bytes().count(b"\n") + 1
    try:
        list(reader())
    except CorpusError as error:
        assert str(path) in str(error)
        assert 0 <= error.line <= lines, (error.line, lines)
        assert error.message
    finally:
        path.unlink()


@FUZZ
@given(lines=st.lists(CONLLU_LINE, max_size=30), raw=RAW, use_raw=st.booleans())
def test_conllu_reader(lines, raw, use_raw):
    path = _write(raw if use_raw else "\n".join(lines).encode())
    _read_all(lambda: read_conllu(path), path)


@FUZZ
@given(lines=st.lists(COLUMN_LINE, max_size=30), raw=RAW, use_raw=st.booleans(), scheme=st.sampled_from(
    ["auto", "iob1", "iob2", "iobes", "bilou"]))
def test_column_reader_and_load_corpus(lines, raw, use_raw, scheme):
    data = raw if use_raw else "\n".join(lines).encode()
    path = _write(data)
    _read_all(lambda: read_sentences(path, CorpusFormat(format="columns", scheme=scheme)), path)
    path = _write(data)
    _read_all(lambda: [load_corpus(path, CorpusFormat(scheme=scheme))], path)


@FUZZ
@given(lines=st.lists(st.one_of(st.text(max_size=30), st.just('{"id": 1, "text": "Hi"}'), st.just('{"text": 3}'),
                                st.just("{"), st.just('{"id": null, "text": ""}')), max_size=20).map(
    lambda ls: [line.replace("\n", " ").replace("\r", " ") for line in ls]),
       fmt=st.sampled_from(["auto", "text", "jsonl"]))
def test_documents_reader(lines, fmt):
    path = _write("\n".join(lines).encode())
    _read_all(lambda: read_documents(path, fmt), path)


@FUZZ
@given(raw=RAW, fmt=st.sampled_from(["auto", "text", "jsonl"]))
def test_documents_reader_on_arbitrary_bytes(raw, fmt):
    path = _write(raw)
    _read_all(lambda: read_documents(path, fmt), path)
