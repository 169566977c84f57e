"""Connecting to a real cluster or Temporal Cloud: what `connect_config` builds, checked without connecting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.service import TLSConfig

from config.settings import Settings
from ops.codec import EncryptionCodec, new_key
from ops.connect import connect_config

CERT = b"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"
CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"


def production(**values: object) -> Settings:
    return Settings(_env_file=None, temporal_address="changeloop.a1b2c.tmprl.cloud:7233", **values)  # type: ignore[arg-type]


def test_mtls_settings_produce_a_tls_client_with_cert_key_ca_and_server_name(tmp_path: Path) -> None:
    for name, data in (("client.pem", CERT), ("client.key", KEY), ("ca.pem", CA)):
        (tmp_path / name).write_bytes(data)
    settings = production(
        temporal_namespace="changeloop.a1b2c",
        temporal_tls_cert=tmp_path / "client.pem",
        temporal_tls_key=tmp_path / "client.key",
        temporal_tls_ca=tmp_path / "ca.pem",
        temporal_tls_server_name="temporal.internal",
    )
    config = connect_config(settings)
    tls = config.service.tls
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert) == (CERT, KEY, CA)
    assert tls.domain == "temporal.internal"
    assert config.namespace == "changeloop.a1b2c"
    bridge = config.service._to_bridge_config()
    assert bridge.target_url == "https://changeloop.a1b2c.tmprl.cloud:7233"
    assert bridge.tls_config is not None


def test_an_api_key_is_sent_only_over_tls() -> None:
    config = connect_config(production(temporal_api_key=SecretStr("cloud-api-key-123")))
    assert config.service.api_key == "cloud-api-key-123"
    assert config.service.tls is True
    assert config.service._to_bridge_config().target_url.startswith("https://")


def test_plain_tls_uses_the_system_roots_and_the_default_is_plaintext() -> None:
    assert connect_config(production(temporal_tls=True)).service.tls is True
    local = connect_config(Settings(_env_file=None))
    assert local.service.tls is False
    assert local.service._to_bridge_config().target_url == "http://localhost:7233"
    assert local.service.api_key is None


def test_half_an_mtls_pair_or_an_unreadable_file_is_refused_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_bytes(CERT)
    with pytest.raises(ValueError, match="both"):
        connect_config(production(temporal_tls_cert=tmp_path / "client.pem"))
    with pytest.raises(ValueError, match="cannot read client key"):
        connect_config(production(temporal_tls_cert=tmp_path / "client.pem", temporal_tls_key=tmp_path / "missing"))


def test_encryption_setting_puts_the_codec_in_the_data_converter() -> None:
    assert connect_config(Settings(_env_file=None)).data_converter.payload_codec is None
    on = Settings(_env_file=None, encryption=True, encryption_keys=SecretStr(f"k1:{new_key()}"))
    codec = connect_config(on).data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec) and codec.active == "k1"
