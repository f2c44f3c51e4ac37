"""Server settings: one pydantic object from a TOML file, ``TAGGER_*`` environment variables
and command-line flags (flags win over the environment, which wins over the file)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class SettingsError(ValueError):
    """Settings that do not validate; the message names each bad field."""


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGGER_", extra="forbid", validate_assignment=True)

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535, description="0 picks a free port")
    models: Path = Field(Path("models"), description="bundled model directories, seeded into the store as version 1")
    data_dir: Path = Field(Path("data"), description="the model store (<data_dir>/models/<name>/<version>/)")
    admin_token: SecretStr | None = Field(None, description="bearer token for the Models and Training "
                                          "services; unset: they are served on loopback only")
    tagging_token: SecretStr | None = Field(None, description="bearer token for tagging; unset: open")
    max_jobs: int = Field(1, ge=1, description="training jobs running at once; the rest queue")
    training_threads: int = Field(max(1, (os.cpu_count() or 2) - 1), ge=1,
                                  description="torch threads per training job (default: leave one core to serving)")
    auto_activate: bool = Field(True, description="activate a finished job's version if its dev score is at "
                                "least the active version's")
    max_corpus_bytes: int = Field(512 * MIB, ge=1024, description="largest corpus upload")
    max_corpora: int = Field(100, ge=1, description="corpora stored at once; uploads past it are refused")
    max_versions: int = Field(20, ge=1, description="versions kept per model; training past it is refused "
                              "until an old version is deleted")
    default_models: list[str] | None = Field(None, min_length=1, description="used when a request names none; unset: "
                                             "en-core if present, else en-pos and en-ner when both are, else every model")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus metrics over HTTP")
    max_message_bytes: int = Field(16 * MIB, ge=1024)
    max_document_chars: int = Field(1_000_000, ge=1)
    max_tokens_per_request: int = Field(200_000, ge=1)
    max_queue_documents: int = Field(1024, ge=1, description="queued documents before RESOURCE_EXHAUSTED")
    batch_tokens: int = Field(4096, ge=1, description="micro-batch token budget")
    batch_wait_ms: float = Field(0.0, ge=0, le=1000, description="how long a micro-batch waits to fill; 0: take "
                                 "what queued up while the previous batch ran (lowest latency, batches under load)")
    grace_seconds: float = Field(10.0, ge=0, description="shutdown grace for in-flight requests")
    drain_seconds: float = Field(0.0, ge=0, description="on shutdown, report NOT_SERVING this long before "
                                 "refusing new calls, so load balancers can move traffic away")
    keepalive_time_ms: int = Field(30_000, ge=1000)
    keepalive_timeout_ms: int = Field(10_000, ge=1000)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = Field(None, description="require client certificates signed by this CA")
    torch_threads: int = Field(1, ge=0, description="threads per tagging call (0: torch's default); one "
                               "thread per model worker keeps small requests fast and models in parallel")
    workers_per_model: int = Field(min(2, os.cpu_count() or 1), ge=1, le=64,
                                   description="micro-batches of one model tagged at once, each on its own thread "
                                   "(default: 2, or 1 on one core)")
    backend: Literal["auto", "torch", "onnx", "int8", "onnx-int8"] = Field(
        "torch", description="where the encoder runs: torch; onnx (ONNX Runtime: same labels, lower latency, "
        "but about 150 MB more memory under load); auto (onnx when onnxruntime is installed); int8 (torch with "
        "the encoder's weights in int8: faster, less memory while serving; labels differ on a few tokens in a "
        "thousand); "
        "onnx-int8 (ONNX Runtime with int8 weights: the lowest latency, onnx's memory)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False

    @model_validator(mode="after")
    def _tls_pairs(self) -> "ServerSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self


def load_settings(path: str | Path | None = None, **flags: Any) -> ServerSettings:
    """File values, overridden by ``TAGGER_*`` variables, overridden by non-None ``flags``."""
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise SettingsError(f"{path}: {error}") from None
    explicit = {k: v for k, v in flags.items() if v is not None}
    try:
        from_env = ServerSettings()  # environment (and defaults)
        merged = {**file_values, **from_env.model_dump(exclude_unset=True), **explicit}
        return ServerSettings.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        raise SettingsError(f"invalid settings: {problems}") from None
