"""``tagger serve`` and ``tagger client ...``, added to the library's command line.

The console script points here, so the ``tagger`` package itself never imports gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tagger.cli import app

client_app = typer.Typer(no_args_is_help=True, help="Call a running tagging server.")
app.add_typer(client_app, name="client")


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option("--host", help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="port (default 50051; 0 picks one)")] = None,
    models: Annotated[Optional[Path], typer.Option("--models", help="bundled models, seeded into the store as version 1 (default models/)")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="the model store (default data/)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="settings TOML file")] = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="serve Prometheus metrics on this port")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key")] = None,
    tls_client_ca: Annotated[Optional[Path], typer.Option("--tls-client-ca", help="require client certificates (mTLS)")] = None,
    log_json: Annotated[Optional[bool], typer.Option("--log-json/--log-text")] = None,
    log_level: Annotated[Optional[str], typer.Option("--log-level")] = None,
) -> None:
    """Serve the models over gRPC until SIGTERM or SIGINT (settings: file < TAGGER_* env < flags)."""
    from server.app import serve as run_server
    from server.settings import SettingsError, load_settings
    from tagger import ArtifactError

    try:
        settings = load_settings(config, host=host, port=port, models=models, data_dir=data_dir, metrics_port=metrics_port,
                                 tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
                                 log_json=log_json, log_level=log_level)
        asyncio.run(run_server(settings))
    except (SettingsError, ArtifactError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


ServerOpt = Annotated[str, typer.Option("--server", help="host:port")]
CaOpt = Annotated[Optional[Path], typer.Option("--tls-ca", help="CA certificate: use TLS")]
CertOpt = Annotated[Optional[Path], typer.Option("--tls-cert", help="client certificate (mutual TLS)")]
KeyOpt = Annotated[Optional[Path], typer.Option("--tls-key", help="client key (mutual TLS)")]
ModelsOpt = Annotated[Optional[list[str]], typer.Option("--model", help="model name (repeatable; default: the server's)")]


TokenOpt = Annotated[Optional[str], typer.Option("--token", envvar="TAGGER_TOKEN", help="bearer token (or TAGGER_TOKEN)")]


def _client(server: str, ca, cert, key, token: str | None = None):
    from server.client import TaggerClient

    return TaggerClient(server, ca=ca, cert=cert, key=key, token=token)


def _rpc_error(error) -> None:
    typer.echo(f"error: {error.code().name}: {error.details()}", err=True)
    raise typer.Exit(1) from None


@client_app.command("models")
def client_models(
    server: ServerOpt = "127.0.0.1:50051", name: Annotated[str, typer.Option("--name")] = "",
    token: TokenOpt = None, tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """List every model version, which is active, and its scores."""
    import grpc

    try:
        with _client(server, tls_ca, tls_cert, tls_key, token) as client:
            response = client.model_versions(name)
    except grpc.RpcError as error:
        _rpc_error(error)
    typer.echo(f"{'model':<16}{'version':>8}  {'active':<7}{'dev':>7}  tasks")
    for version in response.versions:
        tasks = ", ".join(t.name for t in version.tasks)
        typer.echo(f"{version.name:<16}{version.version:>8}  {'*' if version.active else '':<7}"
                   f"{100 * version.dev_score:>7.2f}  {tasks}")


@client_app.command("upload")
def client_upload(
    name: Annotated[str, typer.Argument(help="corpus name (a-z 0-9 . _ -)")],
    path: Annotated[Path, typer.Argument(help="the corpus file")],
    fmt: Annotated[str, typer.Option("--format", help="auto, conllu or columns")] = "auto",
    token_column: Annotated[int, typer.Option("--token-column", help="1-based; 0 detects")] = 0,
    label_column: Annotated[str, typer.Option("--label-column", help="1-based, or upos/xpos; empty detects")] = "",
    scheme: Annotated[str, typer.Option("--scheme")] = "auto",
    server: ServerOpt = "127.0.0.1:50051",
    token: TokenOpt = None, tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """Upload a corpus; the server validates it (errors name the line) and stores it."""
    import grpc
    from tqdm import tqdm

    from tagger_proto.v1 import tagger_pb2 as pb

    corpus_format = pb.CorpusFormat(format=fmt, token_column=token_column, label_column=label_column, scheme=scheme)
    try:
        with _client(server, tls_ca, tls_cert, tls_key, token) as client, \
                tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"uploading {name}") as bar:
            corpus = client.upload(name, path, corpus_format, progress=bar.update)
    except grpc.RpcError as error:
        _rpc_error(error)
    except OSError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"stored {corpus.name}: {corpus.sentences} sentences, {corpus.tokens} tokens, {corpus.kind} labels "
               f"({', '.join(corpus.labels)}), sha256 {corpus.sha256[:16]}")


@client_app.command("train")
def client_train(
    train: Annotated[str, typer.Option("--train", help="uploaded training corpus")],
    dev: Annotated[str, typer.Option("--dev", help="uploaded development corpus")],
    model: Annotated[str, typer.Option("--model", help="model name to add a version to")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="config override, e.g. train.epochs=5")] = None,
    base: Annotated[str, typer.Option("--base", help="continue training this served model (name or name:version)")] = "",
    teacher: Annotated[Optional[list[str]], typer.Option("--teacher", help="distil from this served model (name or "
                                                          "name:version; repeatable): the new model learns its outputs")] = None,
    search_trials: Annotated[int, typer.Option("--search-trials", min=0, help="run a hyperparameter search of this many trials (tagger tune) and register the best")] = 0,
    search_minutes: Annotated[float, typer.Option("--search-minutes", min=0, help="the search's time budget (0: none)")] = 0,
    server: ServerOpt = "127.0.0.1:50051",
    token: TokenOpt = None, tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """Start a training (or, with --teacher, distillation) job and follow it with a progress bar until it ends."""
    import grpc
    from tqdm import tqdm

    overrides = dict(item.split("=", 1) for item in set_ or [] if "=" in item)
    try:
        with _client(server, tls_ca, tls_cert, tls_key, token) as client:
            job = client.start_training(train, dev, model, overrides, base, teacher or [], search_trials,
                                        search_minutes * 60)
            typer.echo(f"job {job.id} queued")
            bar = tqdm(total=job.trials or job.epochs, unit="trial" if job.trials else "epoch",
                       desc=f"{'searching' if job.trials else 'training'} {model}")
            for event in client.watch_job(job.id):
                current = event.job
                done = current.trial if current.trials else \
                    max(0.0, current.epoch - 1 + (current.step / current.steps if current.steps else 0))
                bar.n = round(done, 2)
                bar.set_postfix(state=current.state, loss=f"{current.loss:.3f}", dev=f"{current.dev_score:.4f}",
                                eta=f"{current.eta_seconds:.0f}s")
                bar.refresh()
            bar.close()
    except grpc.RpcError as error:
        _rpc_error(error)
    if current.state != "SUCCEEDED":
        typer.echo(f"job {current.id} {current.state}: {current.error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{model} version {current.version} {'activated' if current.activated else 'registered (not activated)'}")
    typer.echo(_dev_report(dict(current.dev_metrics)))


def _dev_report(metrics: dict[str, float]) -> str:
    """The dev report of a finished job: per task, then per label (seqeval's for span tasks)."""
    lines = []
    for task in sorted({key.split(".")[0] for key in metrics}):
        overall = "  ".join(f"{k} {metrics[f'{task}.{k}']:.4f}" for k in ("accuracy", "precision", "recall", "f1")
                            if f"{task}.{k}" in metrics)
        lines += [f"dev {task}: {overall}", f"  {'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}"]
        labels = sorted({key.split(".")[1] for key in metrics if key.count(".") == 2 and key.startswith(f"{task}.")})
        for label in labels:
            lines.append(f"  {label:<16}" + "".join(f"{metrics[f'{task}.{label}.{k}']:>10.4f}"
                                                    for k in ("precision", "recall", "f1")))
    return "\n".join(lines)


@client_app.command("jobs")
def client_jobs(
    server: ServerOpt = "127.0.0.1:50051",
    token: TokenOpt = None, tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """List training jobs, newest first."""
    import grpc

    try:
        with _client(server, tls_ca, tls_cert, tls_key, token) as client:
            jobs = client.jobs().jobs
    except grpc.RpcError as error:
        _rpc_error(error)
    typer.echo(f"{'job':<14}{'state':<11}{'model':<16}{'version':>8}{'epoch':>7}{'dev':>8}  error")
    for job in jobs:
        typer.echo(f"{job.id:<14}{job.state:<11}{job.model_name:<16}{job.version:>8}{job.epoch:>4}/{job.epochs:<3}"
                   f"{100 * job.dev_score:>7.2f}  {job.error}")


@client_app.command("activate")
def client_activate(
    name: Annotated[str, typer.Argument(help="model name")], version: Annotated[str, typer.Argument(help="version")],
    server: ServerOpt = "127.0.0.1:50051",
    token: TokenOpt = None, tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """Activate a version (rollback = activate the previous one); no request fails meanwhile."""
    import grpc

    try:
        with _client(server, tls_ca, tls_cert, tls_key, token) as client:
            activated = client.activate(name, version)
    except grpc.RpcError as error:
        _rpc_error(error)
    typer.echo(f"{activated.name} version {activated.version} is active")


@client_app.command("tag")
def client_tag(
    text: Annotated[str, typer.Option("--text", help="the text to tag")],
    server: ServerOpt = "127.0.0.1:50051",
    model: ModelsOpt = None,
    scores: Annotated[bool, typer.Option("--scores/--no-scores")] = True,
    tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """Tag one text; prints the response as JSON."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    try:
        with _client(server, tls_ca, tls_cert, tls_key) as client:
            response = client.tag(text, models=model or (), scores=scores)
    except grpc.RpcError as error:
        typer.echo(f"error: {error.code().name}: {error.details()}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(MessageToDict(response, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True), ensure_ascii=False))


@client_app.command("tag-file")
def client_tag_file(
    input: Annotated[Path, typer.Option("--input", help="text lines, JSONL {id, text}, or a CoNLL/CoNLL-U file")],
    output: Annotated[Path, typer.Option("--output", help="where to write the results")],
    server: ServerOpt = "127.0.0.1:50051",
    output_format: Annotated[str, typer.Option("--output-format", help="jsonl, conllu or conll")] = "jsonl",
    input_format: Annotated[str, typer.Option("--input-format", help="auto, text, jsonl, conllu or columns")] = "auto",
    model: ModelsOpt = None,
    scores: Annotated[bool, typer.Option("--scores/--no-scores")] = True,
    tls_ca: CaOpt = None, tls_cert: CertOpt = None, tls_key: KeyOpt = None,
) -> None:
    """Stream a file through TagStream, writing results in order as they arrive."""
    import grpc
    from tqdm import tqdm

    from server.client import make_request
    from server.convert import document_from_pb
    from tagger.data.corpus import CorpusError
    from tagger.data.readers.documents import group_documents, read_documents
    from tagger.data.writers import atomic_output
    from tagger.inference.output import FORMATS, split_sentences, write_document
    from tagger_proto.v1 import tagger_pb2 as pb

    if output_format not in FORMATS:
        typer.echo(f"error: --output-format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(2)
    if input_format == "auto" and input.suffix in (".conllu", ".conll", ".iob2"):
        input_format = "conllu" if input.suffix == ".conllu" else "columns"
    pending: collections.deque = collections.deque()  # (items, sent) in input order

    def requests():  # for document context, a corpus's document in one request (in parts, see DOCUMENT_TOKENS)
        for run in group_documents(read_documents(input, input_format), together):
            doc_id, text, source = run[0]
            sent = source is not None or text != ""  # empty lines are answered here, not sent
            pending.append((run, sent))
            if source is not None:
                yield make_request(tokens=[s.tokens for _, _, s in run], request_id=str(doc_id), models=model or (),
                                   scores=scores)
            elif sent:
                yield make_request(text=text, request_id=str(doc_id), models=model or (), scores=scores)

    try:
        with _client(server, tls_ca, tls_cert, tls_key) as client, atomic_output(output) as handle:
            models = client.list_models()
            tasks = _tasks(models, model or ())
            together = any(m.context_weight > 0 for m in _chosen(models, model or ()))
            bar = tqdm(desc="tagging", unit="doc", disable=not sys.stderr.isatty())

            def write(item, response=None):
                run, _ = item
                doc_id, text, source = run[0]
                if source is None:
                    write_document(handle, output_format, doc_id, document_from_pb(response or pb.TagResponse(), text),
                                   tasks, None)
                    bar.update()
                    return
                joined = "\n".join(" ".join(s.tokens) for _, _, s in run)
                parts = split_sentences(document_from_pb(response, joined))
                for (doc_id, _, source), part in zip(run, parts, strict=True):
                    write_document(handle, output_format, doc_id, part, tasks, source)
                bar.update(len(run))

            for response in client.tag_stream(requests()):
                while not pending[0][1]:
                    write(pending.popleft())
                write(pending.popleft(), response)
            while pending:
                write(pending.popleft())
            bar.close()
    except grpc.RpcError as error:
        typer.echo(f"error: {error.code().name}: {error.details()}", err=True)
        raise typer.Exit(1) from None
    except (CorpusError, ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _chosen(models, names) -> list:
    """The ModelInfos a request naming ``names`` (none: the defaults) uses."""
    return [m for m in models.models if (m.name in names if names else m.default)]


def _tasks(models, names) -> list[str]:
    """Task names of the models a request uses, in model order (the first is the primary label)."""
    chosen = _chosen(models, names)
    return [t.name for m in chosen for t in m.tasks]


if __name__ == "__main__":
    app()
