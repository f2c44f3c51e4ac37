"""The Tagger servicer: validation, micro-batched tagging, errors as gRPC status codes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import grpc

from server.batcher import MicroBatcher, QueueFull, estimate_tokens
from server.convert import model_info, response_pb
from server.metrics import Metrics
from server.registry import ModelEntry, ModelRegistry, UnknownModel
from server.settings import ServerSettings
from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

log = logging.getLogger("tagger.server")



class RequestError(Exception):
    """A request the server refuses: carries the status code and a message for a person."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


# What one TagStream holds read and not yet written, in windows of documents being tagged
# (:meth:`TaggerService._stream_window`): room for the writer to fall behind the workers.
STREAM_BUFFER = 4


class StreamWindow:
    """Documents in flight within one stream: at most ``tokens`` estimated tokens and
    ``documents`` documents, and always at least one document (a long one goes alone).
    ``give`` does not wait, so a task's done callback can call it."""

    def __init__(self, tokens: int, documents: int):
        self.max_tokens, self.max_documents = tokens, documents
        self.tokens = self.documents = 0
        self._waiters: list[asyncio.Future] = []

    def _room(self, size: int) -> bool:
        return self.documents == 0 or (self.documents < self.max_documents and self.tokens + size <= self.max_tokens)

    async def take(self, size: int) -> None:
        while not self._room(size):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.tokens += size
        self.documents += 1

    def give(self, size: int) -> None:
        self.tokens -= size
        self.documents -= 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each takes again if there is room for it
            if not waiter.done():
                waiter.set_result(None)


def request_tokens(request: pb.TagRequest) -> int:
    """The request's document size in tokens, estimated as the micro-batcher does (raw text: by
    its length), before it is validated."""
    if request.WhichOneof("input") == "tokens":
        return estimate_tokens([s.tokens for s in request.tokens.sentences])
    return estimate_tokens(request.text)


class TaggerService(pb_grpc.TaggerServicer):
    def __init__(self, settings: ServerSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.registry: ModelRegistry | None = None
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}  # (name, version) -> batcher

    def attach(self, registry: ModelRegistry) -> None:
        """Serve ``registry``'s models: one micro-batcher each (needs the running event loop)."""
        self.batchers = {(entry.name, entry.version): self._batcher(entry) for entry in registry.entries()}
        self.registry = registry

    async def swap(self, entry: ModelEntry) -> None:
        """Serve ``entry`` for its name from now on. Its batcher exists before the registry
        points at it; the old version's batcher finishes what it holds, then closes."""
        if self.registry is None:
            raise RuntimeError("no registry attached")
        self.batchers[(entry.name, entry.version)] = self._batcher(entry)
        previous = self.registry.put(entry)
        if previous is not None and previous.version != entry.version:
            old = self.batchers.get((previous.name, previous.version))
            if old is not None:
                await old.drain()
                self.batchers.pop((previous.name, previous.version), None)
                await old.close()

    def _batcher(self, entry: ModelEntry) -> MicroBatcher:
        name = entry.name

        def on_batch(documents: int, tokens: int) -> None:
            self.metrics.documents.labels(name).inc(documents)
            self.metrics.tokens.labels(name).inc(tokens)
            self.metrics.batch_size.labels(name).observe(documents)

        batcher = MicroBatcher(entry.tagger, self.settings.batch_tokens, self.settings.batch_wait_ms,
                               self.settings.max_queue_documents, on_batch, self.settings.workers_per_model)
        batcher.start()
        self.metrics.queue_depth.labels(name).set_function(lambda: batcher.depth)
        return batcher

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.batchers.values()))

    # --- RPCs -------------------------------------------------------------------------------

    async def Tag(self, request: pb.TagRequest, context: grpc.aio.ServicerContext) -> pb.TagResponse:
        started = time.perf_counter()
        try:
            response = await self._tag(request, context)
        except RequestError as error:
            self._count("Tag", error.code, started, request.id)
            await context.abort(error.code, str(error))
        self._count("Tag", grpc.StatusCode.OK, started, request.id)
        return response

    async def TagStream(self, requests: AsyncIterator[pb.TagRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TagResponse]:
        """Responses in request order. Documents are read ahead and tagged concurrently, up to
        a window of them being tagged (:meth:`_stream_window`), so a stream fills micro-batches
        on its own; a document leaves that window when it is tagged, and what is tagged waits
        to be written in a buffer of ``STREAM_BUFFER`` windows. Writing a response is a gRPC
        round of its own, one at a time (about 0.3 ms): when documents left the window only as
        their responses went out, reading waited for writing and the workers for reading, 40%
        of a stream's time (2026-12-04)."""
        started = time.perf_counter()
        window: asyncio.Queue[tuple[asyncio.Task, int] | None] = asyncio.Queue()
        tokens, documents = self._stream_window()
        tagging = StreamWindow(tokens, documents)
        unwritten = StreamWindow(STREAM_BUFFER * tokens, STREAM_BUFFER * documents)

        async def read() -> None:
            try:
                async for request in requests:
                    size = request_tokens(request)
                    await unwritten.take(size)
                    await tagging.take(size)
                    task = asyncio.ensure_future(self._tag(request, context))
                    task.add_done_callback(lambda _, size=size: tagging.give(size))
                    await window.put((task, size))
            finally:
                await window.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await window.get()) is not None:
                task, size = item
                try:
                    response = await task
                except RequestError as error:
                    self._count("TagStream", error.code, started, "")
                    await context.abort(error.code, str(error))
                unwritten.give(size)
                yield response
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            while not window.empty():
                pending = window.get_nowait()
                if pending is not None:
                    pending[0].cancel()
        self._count("TagStream", grpc.StatusCode.OK, started, "")

    def _stream_window(self) -> tuple[int, int]:
        """How much of one TagStream is tagged at once, in (estimated) tokens and documents: a
        full micro-batch for every worker and one forming, so the workers are fed while the
        stream's oldest document is tagged; and at most 256 documents or a quarter of the
        queue, so several streams and other callers share it. Counted in tokens too, what a
        stream holds in memory (``STREAM_BUFFER`` times this, read and not yet written) is
        bounded whatever its documents' length (256 documents alone could be 256 documents of
        a million characters each)."""
        settings = self.settings
        return ((settings.workers_per_model + 1) * settings.batch_tokens,
                max(1, min(256, settings.max_queue_documents // 4)))

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        started = time.perf_counter()
        if self.registry is None:
            self._count("ListModels", grpc.StatusCode.UNAVAILABLE, started, "")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "models are loading; retry shortly")
        defaults = set(self.registry.defaults)
        response = pb.ListModelsResponse(models=[model_info(e, e.name in defaults) for e in self.registry.entries()])
        self._count("ListModels", grpc.StatusCode.OK, started, "")
        return response

    # --- work -------------------------------------------------------------------------------

    async def _tag(self, request: pb.TagRequest, context: grpc.aio.ServicerContext) -> pb.TagResponse:
        document = self._validate(request)
        entries = self._models(request.models)
        tasks = self._tasks(request.tasks, entries)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        serving = [self._serving(e) for e in entries]
        entries = [entry for entry, _ in serving]
        if isinstance(document, str) and len(entries) > 1:  # tokenize once for all the models
            document = await serving[0][1].tokenize(document)
        try:
            if len(serving) == 1:  # the response is built on the worker thread, right after tagging
                return await serving[0][1].submit(document, request.include_scores, deadline, lambda tagged: response_pb(
                    [tagged], request.id, entries, tasks, request.include_scores))
            results = await asyncio.gather(*(batcher.submit(document, request.include_scores, deadline)
                                             for _, batcher in serving))
        except QueueFull as error:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {error}; retry with backoff") from None
        except TimeoutError:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the document was tagged") from None
        except ValueError as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        return await asyncio.to_thread(response_pb, results, request.id, entries, tasks, request.include_scores)

    def _serving(self, entry: ModelEntry) -> tuple[ModelEntry, MicroBatcher]:
        """The entry and its batcher; if the version was just swapped out, the active one."""
        batcher = self.batchers.get((entry.name, entry.version))
        if batcher is None:
            assert self.registry is not None
            entry = self.registry.get(entry.name)
            batcher = self.batchers[(entry.name, entry.version)]
        return entry, batcher

    def _validate(self, request: pb.TagRequest) -> str | list[list[str]]:
        which = request.WhichOneof("input")
        limits = self.settings
        if which is None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "empty request: set text or tokens")
        if which == "text":
            if not request.text:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "text is empty")
            if len(request.text) > limits.max_document_chars:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"text has {len(request.text):,} characters; "
                                   f"the limit is {limits.max_document_chars:,} (split the document)")
            return request.text
        sentences = [list(s.tokens) for s in request.tokens.sentences]
        if not sentences or not any(sentences):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "tokens holds no token")
        count = sum(map(len, sentences))
        if count > limits.max_tokens_per_request:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{count:,} tokens; the limit is "
                               f"{limits.max_tokens_per_request:,} per request")
        for i, sentence in enumerate(sentences):
            for j, token in enumerate(sentence):
                if not token.strip():
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"sentence {i}, token {j} is empty or whitespace")
        return sentences

    def _models(self, names: Sequence[str]) -> list[ModelEntry]:
        if self.registry is None:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "models are loading; retry shortly")
        chosen = list(dict.fromkeys(names)) or self.registry.defaults
        try:
            entries = [self.registry.get(name) for name in chosen]
        except UnknownModel as error:
            known = ", ".join(e.name for e in self.registry.entries())
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"no model {error.args[0]!r}; loaded: {known}") from None
        if len({e.tagger.lang for e in entries}) > 1:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "the models tokenize different languages; "
                               "request them separately")
        return entries

    def _tasks(self, tasks: Sequence[str], entries: Sequence[ModelEntry]) -> list[str]:
        available = {t for e in entries for t in e.tasks}
        unknown = [t for t in tasks if t not in available]
        if unknown:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown task {', '.join(unknown)}; the models "
                               f"offer {', '.join(sorted(available))}")
        return list(tasks)

    def _count(self, method: str, code: grpc.StatusCode, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        self.metrics.requests.labels(method, code.name).inc()
        self.metrics.latency.labels(method).observe(seconds)
        log.debug("rpc", extra={"method": method, "code": code.name, "ms": round(seconds * 1000, 2), "id": request_id})
