"""The Training service: corpus upload, training jobs, progress streams."""

from __future__ import annotations

import errno
import json
from typing import Any

import grpc

from server.corpora import CorpusStore
from server.jobs import JobError, JobManager
from server.store import StoreError
from tagger.config import CorpusFormat
from tagger.data.corpus import CorpusError
from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

CHUNK_LIMIT = 1024 * 1024


def job_to_pb(job: dict[str, Any]) -> pb.Job:
    return pb.Job(id=job["id"], state=job["state"], model_name=job["model_name"], version=job["version"],
                  activated=bool(job["activated"]), epoch=job["epoch"], epochs=job["epochs"], step=job["step"],
                  steps=job["steps"], loss=job["loss"], dev_score=job["dev_score"], error=job["error"],
                  created=job["created"], started=job["started"], finished=job["finished"],
                  eta_seconds=job["eta"], dev_metrics=json.loads(job["dev_metrics"] or "{}"),
                  trial=job.get("trial") or 0, trials=job.get("trials") or 0)


def _format(message: pb.CorpusFormat) -> CorpusFormat:
    label: int | str | None = message.label_column or None
    if isinstance(label, str) and label.isdigit():
        label = int(label)
    return CorpusFormat(format=message.format or "auto", token_column=message.token_column or None,
                        label_column=label, scheme=message.scheme or "auto")  # type: ignore[arg-type]


class TrainingService(pb_grpc.TrainingServicer):
    def __init__(self, corpora: CorpusStore, jobs: JobManager):
        self.corpora, self.jobs = corpora, jobs

    async def UploadCorpus(self, chunks, context) -> pb.Corpus:
        upload = None
        try:
            async for chunk in chunks:
                if upload is None:
                    fmt = _format(chunk.format)
                    upload = self.corpora.begin(chunk.name)
                if len(chunk.data) > CHUNK_LIMIT:
                    raise StoreError(f"chunks carry at most {CHUNK_LIMIT:,} bytes")
                upload.write(chunk.data)
            if upload is None:
                raise StoreError("no chunk received")
            meta = upload.finish(fmt)
        except CorpusError as error:
            if upload is not None:
                upload.abort()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"corpus {upload.name if upload else ''!s} rejected, nothing stored: "
                                f"line {error.line}: {error.message}")
        except (StoreError, ValueError) as error:
            if upload is not None:
                upload.abort()
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if "limit" in str(error) else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(error))
        except OSError as error:  # the disk filled up, or the data directory went away
            if upload is not None:
                upload.abort()
            full = error.errno in (errno.ENOSPC, errno.EDQUOT)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.INTERNAL,
                                f"cannot store the corpus ({error.strerror or error}); nothing stored")
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return pb.Corpus(name=meta["name"], sha256=meta["sha256"], size=meta["size"], sentences=meta["sentences"],
                         tokens=meta["tokens"], kind=meta["kind"], labels=meta["labels"])

    async def StartTraining(self, request: pb.StartTrainingRequest, context) -> pb.Job:
        try:
            job = self.jobs.submit(request.train_corpus, request.dev_corpus, request.model_name,
                                   dict(request.overrides), request.base_model, list(request.teachers),
                                   request.search_trials, request.search_time_budget_seconds)
        except StoreError as error:
            code = grpc.StatusCode.NOT_FOUND if "no corpus" in str(error) or "has no version" in str(error) \
                else grpc.StatusCode.RESOURCE_EXHAUSTED if "the limit" in str(error) else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(error))
        except JobError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return job_to_pb(job)

    async def GetJob(self, request: pb.GetJobRequest, context) -> pb.Job:
        return job_to_pb(await self._job(request.id, context))

    async def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_to_pb(j) for j in self.jobs.list()])

    async def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.Job:
        await self._job(request.id, context)
        return job_to_pb(await self.jobs.cancel(request.id))

    async def WatchJob(self, request: pb.GetJobRequest, context):
        await self._job(request.id, context)
        async for job in self.jobs.watch(request.id):
            yield pb.JobEvent(job=job_to_pb(job), final=job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"))

    async def _job(self, job_id: str, context) -> dict[str, Any]:
        try:
            return self.jobs.get(job_id)
        except JobError as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
