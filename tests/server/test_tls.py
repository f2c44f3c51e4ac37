"""TLS and mutual TLS with certificates generated here."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.client import TaggerClient

from .conftest import running_server


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _certificate(subject: str, key, issuer_name, issuer_key, ca: bool, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as files."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _certificate("test CA", ca_key, None, ca_key, ca=True)
    files = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM)}
    for name, server in (("server", True), ("client", False)):
        key = _key()
        cert = _certificate(name, key, ca.subject, ca_key, ca=False, server=server)
        files[f"{name}.pem"] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{name}.key"] = _pem(key)
    other_key = _key()
    files["other-ca.pem"] = _certificate("other CA", other_key, None, other_key, ca=True).public_bytes(serialization.Encoding.PEM)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def test_tls(loop_thread, models_dir, pki):
    with running_server(loop_thread, models_dir, tls_cert=pki / "server.pem", tls_key=pki / "server.key") as running:
        address = f"127.0.0.1:{running.port}"
        with TaggerClient(address, ca=pki / "ca.pem") as client:
            assert client.tag("Secure text .", models=["pos"]).sentences
        with TaggerClient(address, ca=pki / "other-ca.pem", timeout=3) as client:  # untrusted server
            with pytest.raises(grpc.RpcError) as error:
                client.tag("x")
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        with TaggerClient(address, timeout=3) as client:  # plaintext to a TLS port
            with pytest.raises(grpc.RpcError):
                client.tag("x")


def test_mutual_tls(loop_thread, models_dir, pki):
    with running_server(loop_thread, models_dir, tls_cert=pki / "server.pem", tls_key=pki / "server.key",
                        tls_client_ca=pki / "ca.pem") as running:
        address = f"127.0.0.1:{running.port}"
        with TaggerClient(address, ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key") as client:
            assert client.tag("Mutually authenticated .", models=["pos"]).sentences
            assert client.health() == "SERVING"
        with TaggerClient(address, ca=pki / "ca.pem", timeout=3) as client:  # no client certificate
            with pytest.raises(grpc.RpcError) as error:
                client.tag("x")
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_admin_token_over_tls_and_no_token_in_the_logs(loop_thread, models_dir, pki, tmp_path, caplog):
    import logging

    from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

    from .test_models_service import store_server, versions

    secret = "tls-admin-7f3a9c"
    caplog.set_level(logging.DEBUG, logger="tagger.server")
    with store_server(loop_thread, models_dir, tmp_path / "data", admin_token=secret,
                      tls_cert=pki / "server.pem", tls_key=pki / "server.key") as (running, _):
        address = f"127.0.0.1:{running.port}"
        with TaggerClient(address, ca=pki / "ca.pem") as client:
            models = pb_grpc.ModelsStub(client.channel)
            for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", f"Bearer {secret}x")]):
                with pytest.raises(grpc.RpcError) as error:
                    versions(models, metadata)
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert secret not in error.value.details()
            assert versions(models, [("authorization", f"Bearer {secret}")])
            assert client.tag("Tagging stays open .", models=["pos"]).sentences
        with TaggerClient(address, ca=pki / "ca.pem", token=secret) as admin:
            assert admin.model_versions().versions
    assert caplog.records  # the server did log (rpc lines at debug level)
    assert secret not in caplog.text
