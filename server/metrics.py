"""Prometheus metrics, served over HTTP on their own port. Resident memory comes from the
client library's process collector (``process_resident_memory_bytes``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server


class Metrics:
    """One registry per server, so tests can run several servers in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("tagger_requests", "RPCs by method and status code", ["method", "code"],
                                registry=self.registry)
        self.latency = Histogram("tagger_request_seconds", "RPC latency", ["method"], registry=self.registry,
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
        self.documents = Counter("tagger_documents", "documents tagged", ["model"], registry=self.registry)
        self.tokens = Counter("tagger_tokens", "tokens tagged", ["model"], registry=self.registry)
        self.batch_size = Histogram("tagger_batch_documents", "documents per micro-batch", ["model"],
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue_depth = Gauge("tagger_queue_documents", "documents waiting to be tagged", ["model"],
                                 registry=self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint; returns the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port
