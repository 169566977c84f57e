"""Encrypted history: a Temporal payload codec with AES-256-GCM, keys from the environment.

Every payload (workflow and activity inputs and results, signals, updates, queries, memo, and - with the failure
converter that encodes common attributes - failure messages and stack traces) leaves the process encrypted, so the
Temporal server and its database hold ciphertext only. What stays readable by design: workflow IDs, task queues,
activity types and search attributes (the server must index them).

Rotation: each payload names its key in metadata (`encryption-key-id`). Several keys decrypt; one encrypts. To
rotate, put the new key first (or name it in CHANGELOOP_ENCRYPTION_KEY_ID) and keep the old ones listed for as long
as histories encrypted with them are retained.

Payloads written before encryption was switched on pass through in clear by default. With
CHANGELOOP_ENCRYPTION_REQUIRED an unencrypted payload is refused instead: a workflow started or signalled by a client
without the key (the `temporal` CLI, the UI) cannot feed this worker anything.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class KeyConfigError(ValueError):
    """A key setting that cannot be used; the message says which part and why, never the key."""


class UnencryptedPayload(ValueError):
    """An unencrypted payload reached a codec that requires encryption."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id:base64,id2:base64` -> {id: 32 bytes}, in the order given (the first one encrypts by default)."""
    keys: dict[str, bytes] = {}
    for position, item in enumerate(part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id.strip():
            raise KeyConfigError(f"encryption key #{position + 1} must be written 'key-id:base64-key'")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyConfigError(f"encryption key {key_id.strip()!r} is not valid base64") from exc
        if len(key) != 32:
            raise KeyConfigError(f"encryption key {key_id.strip()!r} is {len(key)} bytes; AES-256 needs 32")
        keys[key_id.strip()] = key
    if not keys:
        raise KeyConfigError("encryption is on but CHANGELOOP_ENCRYPTION_KEYS names no key")
    return keys


def new_key() -> str:
    """A fresh random key, base64: what `changeloop keygen` prints."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


class EncryptionCodec(PayloadCodec):
    """AES-GCM per payload, a random 96-bit nonce each time, the key ID bound in as associated data (a payload
    relabelled with another key's ID fails to decrypt instead of decrypting under the wrong name)."""

    def __init__(self, keys: dict[str, bytes], active: str | None = None, *, require: bool = False) -> None:
        if not keys:
            raise KeyConfigError("no encryption key")
        self.require = require
        self.active = active or next(iter(keys))
        if self.active not in keys:
            raise KeyConfigError(
                f"encryption key id {self.active!r} is not among the configured keys ({', '.join(keys)})"
            )
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.active.encode()
        sealed = self._ciphers[self.active].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        # Payloads written before encryption was switched on stay readable, unless encryption is required.
        if payload.metadata.get("encoding") != ENCODING:
            if self.require:
                raise UnencryptedPayload(
                    "refused an unencrypted payload: CHANGELOOP_ENCRYPTION_REQUIRED is on (was it sent without the "
                    "codec, by the temporal CLI or the UI?)"
                )
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(f"payload was encrypted with key {key_id!r}, which is not configured")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except InvalidTag as exc:
            raise ValueError(f"payload under key {key_id!r} failed authentication (tampered or wrong key)") from exc
        return Payload.FromString(plain)


def codec_from_settings(settings: object) -> EncryptionCodec | None:
    """The codec when CHANGELOOP_ENCRYPTION is on; a misconfiguration stops the process here, before any work."""
    require = bool(getattr(settings, "encryption_required", False))
    if not getattr(settings, "encryption", False):
        if require:
            raise KeyConfigError("CHANGELOOP_ENCRYPTION_REQUIRED needs CHANGELOOP_ENCRYPTION=true (and its keys)")
        return None
    secret = getattr(settings, "encryption_keys", None)
    if secret is None:
        raise KeyConfigError("CHANGELOOP_ENCRYPTION is on but CHANGELOOP_ENCRYPTION_KEYS is not set")
    return EncryptionCodec(
        parse_keys(secret.get_secret_value()), getattr(settings, "encryption_key_id", None), require=require
    )


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The pydantic converter, plus the codec and encoded failure attributes when encrypting (an error message can
    quote ticket text: it must not sit in history in clear either)."""
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def encrypted(payloads: Iterable[Payload]) -> bool:
    return all(p.metadata.get("encoding") == ENCODING for p in payloads)
