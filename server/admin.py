"""The Models service: list versions, activate (zero-downtime swap), delete."""

from __future__ import annotations

import asyncio
import logging

import grpc

from server.convert import model_info
from server.registry import ModelEntry, load_entry
from server.service import TaggerService
from server.store import ModelStore, StoreError
from tagger import ArtifactError
from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

log = logging.getLogger("tagger.server")
WARM_UP = "Warm-up sentence for a freshly loaded model in New York ."


class ModelsService(pb_grpc.ModelsServicer):
    def __init__(self, store: ModelStore, tagging: TaggerService):
        self.store, self.tagging = store, tagging
        self._lock = asyncio.Lock()  # one activation or deletion at a time

    async def ListModels(self, request: pb.ListModelVersionsRequest, context) -> pb.ListModelVersionsResponse:
        names = [request.name] if request.name else self.store.names()
        response = pb.ListModelVersionsResponse()
        for name in names:
            try:
                versions = self.store.versions(name)
            except StoreError as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            if request.name and not versions:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {name!r}")
            active = self.store.active(name)
            for version in versions:
                entry = await asyncio.to_thread(self._describe, name, version)
                response.versions.append(self._version(entry, version == active))
        return response

    async def ActivateModel(self, request: pb.ActivateModelRequest, context) -> pb.ModelVersion:
        try:
            entry = await self.activate(request.name, request.version)
        except StoreError as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except ArtifactError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot load {request.name} "
                                f"version {request.version}: {error}; the active version keeps serving")
        return self._version(entry, True)

    async def activate(self, name: str, version: str) -> ModelEntry:
        """Load and warm ``version``, then swap it in; raises StoreError or ArtifactError."""
        async with self._lock:
            path = self.store.path(name, version)
            entry = await asyncio.to_thread(self._load_and_warm, name, version, path)
            self.store.set_active(name, version)
            await self.tagging.swap(entry)
            log.info(f"activated {name} version {version}")
            return entry

    async def activate_if_better(self, name: str, version: str, dev_score: float, enabled: bool) -> bool:
        """After a training job: activate when enabled and at least as good as the active version."""
        active = self.tagging.registry.get(name) if self.tagging.registry and name in self.tagging.registry else None
        if not enabled or (active is not None and dev_score < active.dev_score):
            return False
        await self.activate(name, version)
        return True

    async def DeleteModel(self, request: pb.DeleteModelRequest, context) -> pb.DeleteModelResponse:
        async with self._lock:
            try:
                self.store.delete(request.name, request.version)
            except StoreError as error:
                code = grpc.StatusCode.FAILED_PRECONDITION if "is active" in str(error) else grpc.StatusCode.NOT_FOUND
                await context.abort(code, str(error))
            log.info(f"deleted {request.name} version {request.version}")
            return pb.DeleteModelResponse()

    def _load_and_warm(self, name: str, version: str, path) -> ModelEntry:
        entry = load_entry(name, path, version, self.tagging.settings.backend)
        entry.tagger.tag(WARM_UP)  # first calls allocate; do it before traffic arrives
        return entry

    def _describe(self, name: str, version: str) -> ModelEntry:
        active = self.tagging.registry.get(name) if self.tagging.registry else None
        if active is not None and active.version == version:
            return active
        return load_entry(name, self.store.path(name, version), version)  # metadata only: no ONNX session

    @staticmethod
    def _version(entry: ModelEntry, active: bool) -> pb.ModelVersion:
        info = model_info(entry, False)
        return pb.ModelVersion(name=entry.name, version=entry.version, active=active, tasks=info.tasks,
                               dev_score=entry.dev_score)
