"""Settings: file < TAGGER_* environment < flags, validated."""

from __future__ import annotations

import pytest

from server.settings import SettingsError, load_settings


def test_precedence_file_env_flags(tmp_path, monkeypatch):
    config = tmp_path / "server.toml"
    config.write_text('port = 6000\nhost = "0.0.0.0"\nbatch_wait_ms = 5.0\nmax_document_chars = 99\n')
    monkeypatch.setenv("TAGGER_PORT", "7000")
    monkeypatch.setenv("TAGGER_LOG_JSON", "true")
    settings = load_settings(config, port=None, max_document_chars=1234)
    assert (settings.port, settings.host, settings.batch_wait_ms) == (7000, "0.0.0.0", 5.0)
    assert settings.max_document_chars == 1234 and settings.log_json is True
    assert settings.max_message_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize("content, flags, message", [
    ("port = 70000\n", {}, "port"),
    ("unknown = 1\n", {}, "unknown"),
    ("", {"tls_cert": "cert.pem"}, "tls_cert and tls_key go together"),
    ("", {"tls_client_ca": "ca.pem"}, "needs tls_cert"),
    ("port = [\n", {}, "server.toml"),
    ('backend = "gpu"\n', {}, "backend"),
])
def test_invalid_settings_are_refused(tmp_path, content, flags, message):
    config = tmp_path / "server.toml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=message):
        load_settings(config, **flags)


def test_bad_environment_value(monkeypatch):
    monkeypatch.setenv("TAGGER_BATCH_WAIT_MS", "soon")
    with pytest.raises(SettingsError, match="batch_wait_ms"):
        load_settings()
