"""The contract: generated code matches the .proto, and a client that knows nothing but what
reflection serves (no generated code) can call the service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path):
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", *protos], cwd=ROOT, check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated
    for relative in generated:
        assert (ROOT / relative).read_bytes() == (tmp_path / relative).read_bytes(), \
            f"{relative} is stale or edited by hand: run make proto"


def test_reflection_only_client(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("tagger.v1.Tagger")
        method = service.methods_by_name["Tag"]
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        call = channel.unary_unary("/tagger.v1.Tagger/Tag", request_serializer=request_class.SerializeToString,
                                   response_deserializer=response_class.FromString)
        request = json_format.ParseDict({"id": "r1", "text": "Angela Merkel met Obama .", "include_scores": True},
                                        request_class())
        response = json_format.MessageToDict(call(request, timeout=30))
    assert response["id"] == "r1"
    tokens = response["sentences"][0]["tokens"]
    assert [t["text"] for t in tokens] == ["Angela", "Merkel", "met", "Obama", "."]
    assert set(tokens[0]["labels"]) == {"upos", "ner"}
