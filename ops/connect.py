"""One way to connect to Temporal, used by the worker, the shim and the CLI.

`connect_config(settings)` builds everything a connection needs without connecting, so a test can check that TLS
settings really produce a TLS client: the address, namespace, TLS (mTLS cert + key, server CA, server name), the
API key (Temporal Cloud), and the data converter (pydantic, plus the encryption codec when it is on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import ConnectConfig, ServiceClient, TLSConfig

from config.settings import Settings
from ops.codec import codec_from_settings, data_converter


@dataclass
class ClientConfig:
    """The service connection (ConnectConfig) and what the client adds on top of it."""

    service: ConnectConfig
    namespace: str
    data_converter: DataConverter
    interceptors: Sequence[Interceptor] = field(default_factory=list)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from exc


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLSConfig when any TLS file or name is set; True for plain TLS with system roots; False for plaintext."""
    if (settings.temporal_tls_cert is None) != (settings.temporal_tls_key is None):
        raise ValueError("mTLS needs both CHANGELOOP_TEMPORAL_TLS_CERT and CHANGELOOP_TEMPORAL_TLS_KEY")
    files = (settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca)
    if any(files) or settings.temporal_tls_server_name:
        return TLSConfig(
            client_cert=_read(settings.temporal_tls_cert, "client certificate"),
            client_private_key=_read(settings.temporal_tls_key, "client key"),
            server_root_ca_cert=_read(settings.temporal_tls_ca, "server CA"),
            domain=settings.temporal_tls_server_name,
        )
    # An API key always travels over TLS (Temporal Cloud): never send it in clear.
    return settings.temporal_tls or settings.temporal_api_key is not None


def connect_config(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> ClientConfig:
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return ClientConfig(
        service=ConnectConfig(
            target_host=settings.temporal_address,
            api_key=api_key,
            tls=tls_config(settings),
            runtime=runtime,
        ),
        namespace=settings.temporal_namespace,
        data_converter=data_converter(codec_from_settings(settings)),
        interceptors=list(interceptors),
    )


async def connect(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A client for these settings. `runtime` carries the worker's Prometheus endpoint (ops/metrics.py)."""
    config = connect_config(settings, runtime=runtime, interceptors=interceptors)
    service = await ServiceClient.connect(config.service)
    return Client(
        service,
        namespace=config.namespace,
        data_converter=config.data_converter,
        interceptors=config.interceptors,
    )
