"""Property-based requests against a real server: odd Unicode, whitespace, pre-tokenized input with
empty or blank tokens, huge documents. Every request gets OK or a defined client-error status,
offsets always round-trip, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.client import make_request
from tagger_proto.v1 import tagger_pb2 as pb

from .test_service import assert_round_trip

CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
PIECES = ["\x00", "\x07", "\r\n", "\u200b", "\u200f", "\u202e", "\ufeff", "e\u0301", "\u0301", "👩‍👩‍👧", "🇺🇳",
          "שלום", "مرحبا", "東京", "\t", "  ", "\n\n", "Paris", "New York", ".", "\U0010ffff", "\ud7ff", "ﬁ"]
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(PIECES) | st.text(min_size=1, max_size=8), max_size=60).map(" ".join),
    st.lists(st.sampled_from(PIECES), max_size=60).map("".join),
)
TOKEN = st.one_of(st.text(max_size=6), st.sampled_from(["", " ", "\t", "\u200b", "\x00", "e\u0301", "👩‍👩‍👧"]))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def call(client, request):
    try:
        return client.stub.Tag(request, timeout=30), None
    except grpc.RpcError as error:
        return None, error


@FUZZ
@given(text=TEXTS)
def test_any_text_is_tagged_or_refused_cleanly(client, text):
    response, error = call(client, make_request(text=text))
    if error is not None:
        assert error.code() in CLIENT_ERRORS, (error.code(), error.details(), repr(text))
        assert error.details()
        assert not text.strip() or error.code() != grpc.StatusCode.INVALID_ARGUMENT or "text" in error.details()
        return
    assert_round_trip(response, text)
    tokens = [t for s in response.sentences for t in s.tokens]
    assert all(t.text and not t.text.isspace() for t in tokens), repr(text)
    assert [t.start for t in tokens] == sorted(t.start for t in tokens)


@FUZZ
@given(sentences=st.lists(st.lists(TOKEN, max_size=8), max_size=4))
def test_any_pre_tokenized_input_is_tagged_or_refused_cleanly(client, sentences):
    if not sentences:
        sentences = [[]]
    response, error = call(client, make_request(tokens=sentences))
    # refused: no token at all, or a blank token; an empty sentence beside others is kept, empty
    has_bad = not any(sentences) or any(not t.strip() for s in sentences for t in s)
    if error is not None:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
        assert has_bad, f"refused valid tokens {sentences!r}: {error.details()}"
        return
    assert not has_bad, f"accepted {sentences!r}"
    assert [[t.text for t in s.tokens] for s in response.sentences] == sentences
    assert_round_trip(response, "\n".join(" ".join(s) for s in sentences))


def test_a_5mb_single_line_is_refused_with_its_size_and_a_50000_token_sentence_is_tagged(client):
    huge = ("word " * 1_048_576)[:5 * 1024 * 1024]
    with pytest.raises(grpc.RpcError) as error:
        client.stub.Tag(make_request(text=huge), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in error.value.details()
    tokens = [f"w{i % 97}" for i in range(50_000)]
    response = client.stub.Tag(make_request(tokens=[tokens]), timeout=120)
    assert [len(s.tokens) for s in response.sentences] == [50_000]
    assert client.tag("Still serving after both.").sentences


def test_many_tiny_documents_on_one_stream(client):
    count = 20_000
    requests = (pb.TagRequest(id=str(i), text="x" if i % 3 else "Paris .", models=["pos"]) for i in range(count))
    ids = [r.id for r in client.tag_stream(requests, timeout=300)]
    assert ids == [str(i) for i in range(count)]
