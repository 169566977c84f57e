"""Settings come from CHANGELOOP_* variables; secrets are SecretStr and never print."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr

from config.settings import Settings

SECRETS = {
    "CHANGELOOP_SERVICENOW_PASSWORD": "integration-password",
    "CHANGELOOP_SERVICENOW_CLIENT_SECRET": "oauth-client-secret",
    "CHANGELOOP_WEBHOOK_TOKEN": "shim-webhook-token",
    "CHANGELOOP_SLACK_WEBHOOK_URL": "https://hooks.slack.example/T000/B000/XXXX",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHANGELOOP_TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("CHANGELOOP_TASK_QUEUE", "changeloop-test")
    monkeypatch.setenv("CHANGELOOP_SERVICENOW_URL", "https://acme.service-now.com")
    monkeypatch.setenv("CHANGELOOP_SERVICENOW_USERNAME", "changeloop.integration")
    monkeypatch.setenv("CHANGELOOP_SERVICENOW_CLIENT_ID", "changeloop")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "unprefixed-is-ignored:1")
    return monkeypatch


def test_settings_are_read_from_changeloop_prefixed_variables(environment):
    settings = Settings(_env_file=None)
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.task_queue == "changeloop-test"
    assert settings.servicenow_url == "https://acme.service-now.com"
    assert settings.servicenow_username == "changeloop.integration"
    assert settings.servicenow_client_id == "changeloop"


def test_defaults_match_the_local_contract(monkeypatch):
    for name in [name for name in os.environ if name.startswith("CHANGELOOP_")]:
        monkeypatch.delenv(name)
    settings = Settings(_env_file=None)
    assert settings.temporal_address == "localhost:7233"
    assert settings.temporal_namespace == "default"
    assert settings.task_queue == "changeloop"
    assert settings.ui_url == "http://localhost:8233"


def test_a_dotenv_file_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("CHANGELOOP_TASK_QUEUE", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("CHANGELOOP_TASK_QUEUE=from-dotenv\nCHANGELOOP_WEBHOOK_TOKEN=dotenv-token\n")
    settings = Settings(_env_file=env_file)
    assert settings.task_queue == "from-dotenv"
    assert settings.webhook_token is not None
    assert settings.webhook_token.get_secret_value() == "dotenv-token"


def test_secrets_are_secret_str_and_never_appear_in_repr_or_str(environment):
    settings = Settings(_env_file=None)
    for field in ("servicenow_password", "servicenow_client_secret", "webhook_token", "slack_webhook_url"):
        assert isinstance(getattr(settings, field), SecretStr)
    printed = repr(settings) + str(settings) + settings.model_dump_json()
    for value in SECRETS.values():
        assert value not in printed
    assert settings.servicenow_password is not None
    assert settings.servicenow_password.get_secret_value() == "integration-password"


def test_secret_values_feeds_the_scrubber_every_secret_and_a_short_one_is_named(environment):
    # Short secrets are no longer skipped (they leaked): they stop the process at start (ops/scrub.py `install`).
    environment.setenv("CHANGELOOP_WEBHOOK_TOKEN", "abc")
    settings = Settings(_env_file=None)
    assert sorted(settings.secret_values()) == sorted(
        [
            "integration-password",
            "oauth-client-secret",
            "abc",
            "https://hooks.slack.example/T000/B000/XXXX",
        ]
    )
    assert settings.short_secrets() == ["CHANGELOOP_WEBHOOK_TOKEN"]


def test_execution_url_links_into_the_temporal_ui_history():
    settings = Settings(_env_file=None, ui_url="http://localhost:8233/", temporal_namespace="prod")
    assert (
        settings.execution_url("change-CHG0030001")
        == "http://localhost:8233/namespaces/prod/workflows/change-CHG0030001"
    )
    assert (
        settings.execution_url("change-CHG0030001", "run-1")
        == "http://localhost:8233/namespaces/prod/workflows/change-CHG0030001/run-1/history"
    )
