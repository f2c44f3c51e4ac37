"""Every RPC and every error code against a real server and a real client."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.client import TaggerClient, make_request
from tagger import Tagger
from tagger.inference.runtime import onnx_available
from tagger_proto.v1 import tagger_pb2 as pb

from .conftest import running_server

TEXT = "Barack Obama visited  Paris last week.\n\nThen he flew to Berlin with Angela Merkel 👩‍👩‍👧."


def assert_round_trip(response: pb.TagResponse, text: str) -> None:
    for sentence in response.sentences:
        for token in sentence.tokens:
            assert text[token.start:token.end] == token.text
        for entity in sentence.entities:
            assert text[entity.start:entity.end] == entity.text
            assert entity.start == sentence.tokens[entity.token_start].start
            assert entity.end == sentence.tokens[entity.token_end - 1].end


def test_tag_text_applies_default_models_with_offsets(client, models_dir):
    response = client.tag(TEXT, scores=True, request_id="doc-1")
    assert response.id == "doc-1"
    assert [(m.name, len(m.version)) for m in response.models] == [("pos", 12), ("ner", 12)]
    assert_round_trip(response, TEXT)
    expected = Tagger.load(models_dir / "pos").tag(TEXT)
    tokens = [t for s in response.sentences for t in s.tokens]
    assert [t.labels["upos"].value for t in tokens] == [t.labels["upos"].value for s in expected.sentences for t in s.tokens]
    assert all(set(t.labels) == {"upos", "ner"} for t in tokens)
    assert all(0 < t.labels["upos"].score <= 1.0 for t in tokens)
    ner = Tagger.load(models_dir / "ner").tag(TEXT)
    assert [(e.label, e.start, e.end) for s in response.sentences for e in s.entities] == \
        [(e.label, e.start, e.end) for s in ner.sentences for e in s.entities]


def test_scores_are_zero_unless_asked_and_tasks_filter(client):
    response = client.tag(TEXT, models=["pos"], tasks=["upos"])
    assert [m.name for m in response.models] == ["pos"]
    tokens = [t for s in response.sentences for t in s.tokens]
    assert tokens and all(set(t.labels) == {"upos"} and t.labels["upos"].score == 0 for t in tokens)


def test_scores_are_probabilities_and_only_where_asked_within_a_shared_batch(client, shared_data):
    """A stream's documents share micro-batches; half ask for scores. Those get the CRF
    marginals (in [0, 1], the served models' labels), the others zeros."""
    from tagger.data.readers import read_conllu

    texts = [s.text for s in read_conllu(shared_data / "ud-english-ewt" / "en_ewt-ud-dev.conllu", None)][:400]
    requests = (make_request(text=t, request_id=str(i), scores=i % 2 == 0) for i, t in enumerate(texts))
    responses = list(client.tag_stream(requests))
    for i, response in enumerate(responses):
        labels = [label for s in response.sentences for t in s.tokens for label in t.labels.values()]
        scores = [label.score for label in labels] + [e.score for s in response.sentences for e in s.entities]
        assert labels, i
        if i % 2:
            assert all(x == 0 for x in scores), i
        else:
            assert all(0 < x <= 1.0 for x in scores), i


def test_tag_pre_tokenized(client):
    sentences = [["New", "York", "is", "big", "."], ["Yes", "!"]]
    response = client.tag(tokens=sentences, models=["pos"])
    assert [[t.text for t in s.tokens] for s in response.sentences] == sentences
    assert_round_trip(response, "New York is big .\nYes !")


def test_whitespace_only_text_gives_no_sentences(client):
    assert list(client.tag(" \n\t ").sentences) == []


def test_stream_keeps_order_and_ids_over_1000_documents(client):
    texts = [f"Document number {i} mentions {'Paris' if i % 2 else 'London'} ." * (1 + i % 3) for i in range(1000)]
    requests = (make_request(text=t, request_id=f"d{i}", models=["pos"]) for i, t in enumerate(texts))
    responses = list(client.tag_stream(requests))
    assert [r.id for r in responses] == [f"d{i}" for i in range(1000)]
    for response, text in zip(responses[::97], texts[::97]):
        assert_round_trip(response, text)
        assert " ".join(t.text for s in response.sentences for t in s.tokens).replace(" ", "") == text.replace(" ", "")


def test_a_streams_window_holds_a_token_budget_and_a_long_document_goes_alone():
    import asyncio

    from server.service import StreamWindow, request_tokens

    assert request_tokens(make_request(text="x" * 500)) == 100  # raw text: estimated as the batcher does
    assert request_tokens(make_request(tokens=[["a", "b"], ["c"]])) == 3

    async def scenario() -> None:
        window = StreamWindow(tokens=100, documents=3)
        await window.take(60)
        await window.take(40)
        blocked = asyncio.ensure_future(window.take(1))  # over the token budget: waits
        await asyncio.sleep(0.01)
        assert not blocked.done()
        window.give(60)
        await asyncio.wait_for(blocked, 1)
        await window.take(1)
        extra = asyncio.ensure_future(window.take(1))  # three documents already: waits for one to end
        await asyncio.sleep(0.01)
        assert not extra.done() and (window.tokens, window.documents) == (42, 3)
        for size in (40, 1, 1):
            window.give(size)
        await asyncio.wait_for(extra, 1)
        window.give(1)
        assert (window.tokens, window.documents) == (0, 0)
        await asyncio.wait_for(window.take(10_000), 1)  # larger than the budget, but nothing else in flight

    asyncio.run(scenario())


def test_a_stream_reads_and_tags_ahead_while_its_responses_wait_to_be_written(loop_thread, models_dir):
    """A document leaves the tagging window when it is tagged, not when its response is written:
    with the writer stopped after the first response, the stream goes on reading and tagging
    up to its buffer of STREAM_BUFFER windows (here 2 documents a window, 8 in the buffer),
    and no further."""
    import asyncio

    from server.service import STREAM_BUFFER

    class Context:
        def time_remaining(self):
            return None

    async def requests():
        for i in range(20):
            yield make_request(text=f"Document number {i} .", models=["pos"], request_id=f"d{i}")

    async def scenario(service) -> tuple[str, list[float]]:
        responses = service.TagStream(requests(), Context())
        first = await responses.__anext__()  # the writer takes one response, then stops
        seen = []
        for _ in range(40):  # up to 2 s for the reader to fill the buffer
            await asyncio.sleep(0.05)
            seen.append(documents_tagged(running))
        await responses.aclose()
        return first.id, seen

    with running_server(loop_thread, models_dir, max_queue_documents=8) as running:
        assert running.service._stream_window()[1] == 2
        first, seen = loop_thread.run(scenario(running.service))
    assert first == "d0"
    assert seen[-1] == 1 + STREAM_BUFFER * 2  # the written one and a full buffer; not 1 + 2, not all 20
    assert seen[-1] == seen[-5]  # and it stays there


def test_list_models(client):
    models = {m.name: m for m in client.list_models().models}
    assert set(models) == {"pos", "ner"}
    assert models["pos"].default and models["ner"].default
    ner_task = models["ner"].tasks[0]
    assert (ner_task.name, ner_task.kind) == ("ner", "span")
    assert {"B-PER", "I-PER", "O"} <= set(ner_task.labels)
    assert models["pos"].tasks[0].name == "upos" and "NOUN" in models["pos"].tasks[0].labels
    assert len(models["pos"].version) == 12


@pytest.mark.parametrize("request_kwargs, code, message", [
    ({}, grpc.StatusCode.INVALID_ARGUMENT, "set text or tokens"),
    ({"text": ""}, grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
    ({"tokens": [["a", " "]]}, grpc.StatusCode.INVALID_ARGUMENT, "sentence 0, token 1 is empty"),
    ({"tokens": [[]]}, grpc.StatusCode.INVALID_ARGUMENT, "no token"),
    ({"text": "x", "models": ["nope"]}, grpc.StatusCode.NOT_FOUND, "no model 'nope'"),
    ({"text": "x", "tasks": ["lemma"]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown task lemma"),
    ({"text": "x" * 1_000_001}, grpc.StatusCode.INVALID_ARGUMENT, "the limit is 1,000,000"),
])
def test_bad_requests_get_clear_status(client, request_kwargs, code, message):
    request = pb.TagRequest(**{k: v for k, v in request_kwargs.items() if k in ("models", "tasks")})
    if "text" in request_kwargs:
        request.text = request_kwargs["text"]
    if "tokens" in request_kwargs:
        request.tokens.CopyFrom(make_request(tokens=request_kwargs["tokens"]).tokens)
    with pytest.raises(grpc.RpcError) as error:
        client.stub.Tag(request, timeout=30)
    assert error.value.code() == code
    assert message in error.value.details()
    assert client.tag("Still serving.").sentences  # a bad request never affects others


def test_bad_request_in_a_stream_ends_it_with_its_status(client):
    requests = [make_request(text="fine", request_id="1"), make_request(text="", request_id="2")]
    received = []
    with pytest.raises(grpc.RpcError) as error:
        for response in client.tag_stream(iter(requests)):
            received.append(response.id)
    assert received == ["1"]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_message_size_limit(loop_thread, models_dir):
    with running_server(loop_thread, models_dir, max_message_bytes=64 * 1024) as running:
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            with pytest.raises(grpc.RpcError) as error:
                client.tag("word " * 20_000)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed")
def test_a_server_on_the_onnx_backend_answers_like_the_torch_one(loop_thread, models_dir, client):
    with running_server(loop_thread, models_dir, backend="onnx") as running:
        with TaggerClient(f"127.0.0.1:{running.port}") as onnx_client:
            got, expected = onnx_client.tag(TEXT), client.tag(TEXT)
            stream = list(onnx_client.tag_stream(make_request(text=t, request_id=str(i))
                                                 for i, t in enumerate([TEXT, "Apple hired Tim Cook."] * 20)))

    def labels(response):
        return [[(t.text, t.start, t.end, dict(t.labels)) for t in s.tokens] for s in response.sentences]

    assert labels(got) == labels(expected) and [(e.label, e.text) for s in got.sentences for e in s.entities] == \
        [(e.label, e.text) for s in expected.sentences for e in s.entities]
    assert [r.id for r in stream] == [str(i) for i in range(40)]
    assert_round_trip(got, TEXT)


def test_health_and_reflection(client, server):
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "tagger.v1.Tagger"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"tagger.v1.Tagger", "grpc.health.v1.Health"} <= names


def test_not_serving_until_models_attached(loop_thread, models_dir):
    from server.app import build_server
    from server.registry import ModelRegistry
    from server.settings import ServerSettings

    settings = ServerSettings(port=0, models=models_dir, default_models=["pos"])
    running = loop_thread.run(build_server(settings))
    try:
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            assert client.health() == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as error:
                client.tag("Loading?")
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            loop_thread.run(running.attach(ModelRegistry.from_directory(models_dir, ["pos"])))
            assert client.health("tagger.v1.Tagger") == "SERVING"
            assert client.tag("Loaded.").sentences
    finally:
        loop_thread.run(running.stop(0))


def test_full_queue_answers_resource_exhausted(loop_thread, models_dir):
    # A long batch wait keeps documents queued, so a queue of 2 fills up.
    with running_server(loop_thread, models_dir, max_queue_documents=2, batch_wait_ms=300) as running:
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                futures = [pool.submit(client.tag, f"Sentence {i} .", models=["pos"]) for i in range(12)]
                codes = []
                for future in futures:
                    try:
                        future.result()
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as error:
                        codes.append(error.code())
                        assert "server busy" in error.details()
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def documents_tagged(running) -> float:
    return sum(s.value for metric in running.metrics.documents.collect() for s in metric.samples
               if s.name.endswith("_total"))


def test_deadline_and_cancellation_drop_the_work(loop_thread, models_dir):
    with running_server(loop_thread, models_dir, batch_wait_ms=400) as running:
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            with pytest.raises(grpc.RpcError) as error:
                client.tag("Too slow for this deadline .", models=["pos"], timeout=0.1)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            call = client.stub.Tag.future(make_request(text="Cancelled soon .", models=["pos"]), timeout=30)
            time.sleep(0.1)
            assert call.cancel()
            time.sleep(0.8)  # past the batch window: the worker has seen both jobs
            assert documents_tagged(running) == 0  # neither was computed
            assert client.tag("Computed .", models=["pos"]).sentences
            assert documents_tagged(running) == 1


def test_metrics_endpoint(client, server):
    client.tag("Metrics please .")
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'tagger_requests_total{code="OK",method="Tag"}' in body
    assert "tagger_request_seconds_bucket" in body
    assert 'tagger_tokens_total{model="pos"}' in body
    assert "tagger_batch_documents_bucket" in body and "tagger_queue_documents" in body
    assert "process_resident_memory_bytes" in body


def test_draining_reports_not_serving_then_refuses(loop_thread, models_dir):
    import asyncio

    with running_server(loop_thread, models_dir) as running:
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            assert client.health() == "SERVING"
            stopping = asyncio.run_coroutine_threadsafe(running.stop(grace=5, drain=1.0), loop_thread.loop)
            time.sleep(0.3)
            assert client.health() == "NOT_SERVING"
            assert client.health("tagger.v1.Tagger") == "NOT_SERVING"
            assert client.tag("Still answered while draining .", models=["pos"]).sentences
            stopping.result(10)
            with pytest.raises(grpc.RpcError) as error:
                client.tag("Refused .", timeout=3)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_request_is_one_document_for_document_context(loop_thread, models_dir, tmp_path, shared_data):
    """A model with document context reads a request's sentences together; ListModels says so."""
    from tagger.data.corpus import document_ids
    from tagger.data.readers import load_corpus
    from tagger.inference.predict import predict
    from tagger.model.artifact import save_model
    from tagger.model.directory import load_model

    model = load_model(models_dir / "ner")
    model.config = model.config.with_context(weight=1.0)
    served = tmp_path / "served"
    shutil.copytree(models_dir / "pos", served / "pos")
    save_model(model, served / "ner")
    sentences = load_corpus(shared_data / "uner-english-ewt" / "en_ewt-ud-dev.iob2", kind="span").sentences[:300]
    ids = document_ids(sentences)
    documents: dict[int, list[list[str]]] = {}
    for sentence, document in zip(sentences, ids):
        documents.setdefault(document, []).append(list(sentence.tokens))
    with running_server(loop_thread, served) as running, TaggerClient(f"127.0.0.1:{running.port}") as client:
        weights = {m.name: m.context_weight for m in client.list_models().models}
        assert weights == {"pos": 0.0, "ner": 1.0}
        got = [[t.labels["ner"].value for t in s.tokens]
               for tokens in documents.values() for s in client.tag(tokens=tokens, models=["ner"]).sentences]
    tokens = [s.tokens for s in sentences]
    assert got == [p["ner"].labels for p in predict(model, tokens, scores=False, documents=ids)]
    assert got != [p["ner"].labels for p in predict(model, tokens, scores=False)]
