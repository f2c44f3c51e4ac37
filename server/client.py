"""A small synchronous Python client for the tagging service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc


def make_request(text: str | None = None, tokens: Sequence[Sequence[str]] | None = None, request_id: str = "",
                 models: Sequence[str] = (), scores: bool = False, tasks: Sequence[str] = ()) -> pb.TagRequest:
    """A TagRequest for raw text or pre-tokenized sentences."""
    request = pb.TagRequest(id=request_id, models=list(models), include_scores=scores, tasks=list(tasks))
    if tokens is not None:
        request.tokens.CopyFrom(pb.TokenizedDocument(sentences=[pb.TokenizedSentence(tokens=list(s)) for s in tokens]))
    else:
        request.text = text or ""
    return request


class TaggerClient:
    """Connect to a server (TLS when ``ca`` is given; mutual TLS with ``cert`` and ``key``).

    Example::

        with TaggerClient("127.0.0.1:50051") as client:
            response = client.tag("Barack Obama visited Paris.", scores=True)
    """

    def __init__(self, address: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                 timeout: float | None = 30.0, max_message_bytes: int = 16 * 1024 * 1024,
                 server_name: str | None = None, token: str | None = None, load_balancing: str | None = None):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if load_balancing:  # e.g. round_robin over "ipv4:10.0.0.1:50051,10.0.0.2:50051" or a DNS name
            options.append(("grpc.lb_policy_name", load_balancing))
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if ca is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(ca).read_bytes(),
                private_key=Path(key).read_bytes() if key else None,
                certificate_chain=Path(cert).read_bytes() if cert else None)
            self.channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.timeout = timeout
        self.metadata = [("authorization", f"Bearer {token}")] if token else None
        self.stub = pb_grpc.TaggerStub(self.channel)
        self.models_stub = pb_grpc.ModelsStub(self.channel)
        self.training_stub = pb_grpc.TrainingStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> "TaggerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def tag(self, text: str | None = None, tokens: Sequence[Sequence[str]] | None = None, models: Sequence[str] = (),
            scores: bool = False, request_id: str = "", tasks: Sequence[str] = (),
            timeout: float | None = None) -> pb.TagResponse:
        request = make_request(text, tokens, request_id, models, scores, tasks)
        return self.stub.Tag(request, timeout=timeout or self.timeout, metadata=self.metadata)

    def tag_stream(self, requests: Iterable[pb.TagRequest], timeout: float | None = None) -> Iterator[pb.TagResponse]:
        """Responses in request order; requests are read lazily, as the stream has room."""
        return self.stub.TagStream(iter(requests), timeout=timeout, metadata=self.metadata)

    def list_models(self) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout, metadata=self.metadata)

    def model_versions(self, name: str = "") -> pb.ListModelVersionsResponse:
        return self.models_stub.ListModels(pb.ListModelVersionsRequest(name=name), timeout=self.timeout,
                                           metadata=self.metadata)

    def activate(self, name: str, version: str, timeout: float | None = 120.0) -> pb.ModelVersion:
        return self.models_stub.ActivateModel(pb.ActivateModelRequest(name=name, version=version), timeout=timeout,
                                              metadata=self.metadata)

    def delete(self, name: str, version: str) -> None:
        self.models_stub.DeleteModel(pb.DeleteModelRequest(name=name, version=version), timeout=self.timeout,
                                     metadata=self.metadata)

    def upload(self, name: str, path: Path, fmt: pb.CorpusFormat | None = None, chunk: int = 1024 * 1024,
               progress=None) -> pb.Corpus:
        """Stream a corpus file in chunks of at most 1 MiB; ``progress`` is called with bytes sent."""
        def chunks():
            with open(path, "rb") as handle:
                first = True
                while data := handle.read(chunk):
                    yield pb.CorpusChunk(name=name, format=fmt or pb.CorpusFormat(), data=data) if first \
                        else pb.CorpusChunk(data=data)
                    first = False
                    if progress:
                        progress(len(data))
                if first:
                    yield pb.CorpusChunk(name=name, format=fmt or pb.CorpusFormat())
        return self.training_stub.UploadCorpus(chunks(), timeout=None, metadata=self.metadata)

    def start_training(self, train: str, dev: str, model_name: str, overrides: dict[str, str] | None = None,
                       base_model: str = "", teachers: Sequence[str] = (), search_trials: int = 0,
                       search_seconds: float = 0.0) -> pb.Job:
        """Start a training job; with ``teachers`` (served models, ``name`` or ``name:version``)
        a distillation job, with ``search_trials`` a hyperparameter search."""
        request = pb.StartTrainingRequest(train_corpus=train, dev_corpus=dev, model_name=model_name,
                                          overrides=overrides or {}, base_model=base_model, teachers=list(teachers),
                                          search_trials=search_trials, search_time_budget_seconds=search_seconds)
        return self.training_stub.StartTraining(request, timeout=self.timeout, metadata=self.metadata)

    def watch_job(self, job_id: str) -> Iterator[pb.JobEvent]:
        return self.training_stub.WatchJob(pb.GetJobRequest(id=job_id), timeout=None, metadata=self.metadata)

    def jobs(self) -> pb.ListJobsResponse:
        return self.training_stub.ListJobs(pb.ListJobsRequest(), timeout=self.timeout, metadata=self.metadata)

    def cancel_job(self, job_id: str) -> pb.Job:
        return self.training_stub.CancelJob(pb.CancelJobRequest(id=job_id), timeout=self.timeout,
                                            metadata=self.metadata)

    def health(self, service: str = "") -> str:
        """``SERVING``, ``NOT_SERVING`` or ``SERVICE_UNKNOWN``."""
        response = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
