"""Process configuration: `CHANGELOOP_*` environment variables, `.env` honoured.

Secrets are `SecretStr` so they never print by accident; `secret_values()` feeds the log redactor.
Nothing here is ever passed into a workflow: workflows get IDs and ticket data, activities read secrets
from this object in the worker's own process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHANGELOOP_", env_file=".env", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "changeloop"
    ui_url: str = "http://localhost:8233"

    servicenow_url: str = "http://127.0.0.1:8080"
    servicenow_username: str | None = None
    servicenow_password: SecretStr | None = None
    servicenow_client_id: str | None = None
    servicenow_client_secret: SecretStr | None = None
    # Optional URL custom field on change_request that receives the execution link (e.g. u_changeloop_execution).
    execution_url_field: str | None = None

    webhook_token: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    runbooks: Path | None = None
    # CMDB reconciliation: its config file (default starter/reconcile.yaml) and where a run keeps its scans and delta
    # outside workflow history (shared by every worker that polls the task queue).
    reconcile: Path | None = None
    reconcile_state_dir: Path = Path(".changeloop/reconcile")

    log_level: str = "INFO"

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor. Short values are skipped: redacting 'a' would shred logs."""
        values: list[str] = []
        for field in ("servicenow_password", "servicenow_client_secret", "webhook_token", "slack_webhook_url"):
            secret = getattr(self, field)
            if secret is not None and len(secret.get_secret_value()) >= 4:
                values.append(secret.get_secret_value())
        return values

    def execution_url(self, workflow_id: str, run_id: str | None = None) -> str:
        """Link into the Temporal UI history of one execution; the auditor's way back from the ticket."""
        base = self.ui_url.rstrip("/")
        url = f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
        return f"{url}/{run_id}/history" if run_id else url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
