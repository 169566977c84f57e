"""Process configuration: `CHANGELOOP_*` environment variables, `.env` honoured.

Secrets are `SecretStr` so they never print by accident; `secret_values()` feeds the scrubber (ops/scrub.py), and
`short_secrets()` names those too short to be secrets (the worker and the shim refuse to start with one).
Nothing here is ever passed into a workflow: workflows get IDs and ticket data, activities read secrets
from this object in the worker's own process.
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.principals import PrincipalConfig
from config.runbooks import Duration
from config.secrets import MIN_SECRET_LENGTH

SECRET_FIELDS = (
    "servicenow_password",
    "servicenow_client_secret",
    "webhook_token",
    "slack_webhook_url",
    "temporal_api_key",
    "encryption_keys",
    "codec_tokens",
    "decision_key",
    "callback_signing_key",
)


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
    # The Change Management API (sn_chg_rest) for creating and moving changes: auto = where the instance has it.
    change_api: Literal["auto", "on", "off"] = "auto"

    webhook_token: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    runbooks: Path | None = None
    # CMDB reconciliation: its config file (default config/reconcile.yaml) and this worker's own scratch dir, where a
    # run whose pipeline it holds keeps its scans and delta outside workflow history (never shared: the run's stages
    # come to this worker through its own task queue, workflows/reconcile/workflow.py).
    reconcile: Path | None = None
    reconcile_state_dir: Path = Path(".changeloop/reconcile")

    log_level: str = "INFO"

    # -- ServiceNow request budget (servicenow/budget.py, activities/budget.py, README "Performance") ----------------
    # Requests per second this process spends on ServiceNow, shared by every activity, served by priority (a change
    # and incidents first, wave notes next, reconciliation last); a 429 pauses it until Retry-After. Unset: no
    # budget. Keep the sum over every process of the integration user under the instance's hourly rule / 3600.
    servicenow_budget: float | None = Field(default=None, gt=0)
    # Requests that may go at once after a quiet spell; default one second's worth of the budget.
    servicenow_budget_burst: float | None = Field(default=None, ge=1)

    # -- incidents from failed workflows (activities/incidents.py, README "Incidents") --------------------------------
    incident_default_production: bool = True  # a workflow whose runbook does not say counts as production
    incident_default_group: str = "Service Desk"  # assignment group when a CI has no support_group/managed_by_group
    # busines_criticality digit -> "impact/urgency", over the default table (JSON: {"3": "3/3"})
    incident_criticality: dict[str, str] = {}
    incident_log_lines: int = 20  # last lines of the failing step's output in the description
    incident_resolve_wait: timedelta = timedelta(days=30)  # how long the incident workflow waits for `resolve`
    incident_create_timeout: timedelta = timedelta(seconds=10)  # start_to_close of the create; a hang retries

    # -- evidence on the ticket (activities/evidence/, README "Attachments and change tasks") ----------------------
    # One attachment's cap, below the instance's com.glide.attachment.max_size: a longer text keeps its head and tail.
    attachment_max_bytes: int = 5 * 1024 * 1024
    # What a runbook step returns of its output (scrubbed; a longer output keeps its head and end): the runbook keeps
    # it for the log it attaches at its end. Site workers have no ServiceNow credentials, so a step never uploads.
    step_output_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    # Post each closed change to Slack (CHANGELOOP_SLACK_WEBHOOK_URL): number, outcome, runbook, links.
    slack_change_closed: bool = False

    # -- a real cluster or Temporal Cloud (starter/temporal.py `connect_config`) --------------------------------------
    temporal_tls: bool = False  # TLS with the system's CA roots; implied by any of the files below or an API key
    temporal_tls_cert: Path | None = None  # client certificate (PEM) for mTLS, with temporal_tls_key
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None  # CA that signed the server's certificate (PEM); default: system roots
    temporal_tls_server_name: str | None = None  # SNI / name to verify when it differs from the address's host
    temporal_api_key: SecretStr | None = None  # Temporal Cloud API key (sent as a bearer token, over TLS)

    # -- workers by site (activities/sites.py) -----------------------------------------------------------------------
    site: str | None = None  # this worker's site: `changeloop worker --site` serves <task_queue>-<site> only
    site_field: str | None = None  # CMDB field of the CI naming its site (location, u_site); unset: no CMDB lookup
    site_map: dict[str, str] = {}  # CI name -> site; wins over site_field (JSON in the environment)

    # -- observability (ops/) ----------------------------------------------------------------------------------------
    metrics_address: str | None = None  # worker Prometheus endpoint, e.g. 0.0.0.0:9464 (SDK + changeloop metrics)
    health_address: str | None = None  # worker /healthz and /readyz, e.g. 0.0.0.0:9465

    # -- encrypted history (ops/codec.py) ----------------------------------------------------------------------------
    encryption: bool = False  # encrypt every payload (inputs, results, signals, failures) before it leaves
    # "key-id:base64-of-32-bytes,older-id:base64..."; the first (or encryption_key_id) encrypts, all decrypt
    encryption_keys: SecretStr | None = None
    encryption_key_id: str | None = None
    codec_tokens: SecretStr | None = None  # bearer token(s) for the shim's /codec/* (comma-separated); unset: off
    codec_cors_origins: list[str] = []  # browser origins allowed to call /codec/*; default: UI_URL's origin
    # The UI's OIDC access tokens on /codec/* (TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true; ops/oidc.py): the issuer (`iss`)
    # turns it on, the audience (`aud`) is required with it; keys from the JWKS URL or the issuer's discovery document
    codec_oidc_issuer: str | None = None
    codec_oidc_audience: str | None = None
    codec_oidc_jwks_url: str | None = None
    codec_oidc_required_claim: str | None = None  # "groups=temporal-auditors": the claim must equal / contain it
    # DEV ONLY (`changeloop dev` sets it): the login-less dev UI on this machine may decode without a token; refused
    # unless every codec origin is loopback, and only for loopback callers that no proxy forwarded
    codec_dev_loopback: bool = False
    # Refuse any payload that is not encrypted (decode) instead of passing it through: on once every history written
    # before encryption was switched on has expired.
    encryption_required: bool = False

    # -- what the worker may reach, and its secrets (ops/outbound.py, config/secrets.py) ------------------------------
    # Hosts that flow callbacks and HTTP runbook steps may reach: names (api.example.com, *.example.com) and
    # addresses or CIDRs (10.20.0.0/16, 127.0.0.1). Empty: none. Loopback, link-local (169.254.0.0/16, the cloud
    # metadata service) and private addresses are refused unless an entry covers them. Comma-separated or JSON.
    outbound_allow: Annotated[list[str], NoDecode] = []
    # Environment variables the registry and the reconciliation config may name as `{secret: NAME}`: the worker
    # reads only these, each at least 8 characters. Comma-separated or JSON.
    secret_names: Annotated[list[str], NoDecode] = []
    # Non-secret variables of the worker that every child process gets beside PATH, HOME and LANG (SSH_AUTH_SOCK,
    # KUBECONFIG, HTTPS_PROXY). Children get nothing else of the worker's environment. Comma-separated or JSON.
    child_env: Annotated[list[str], NoDecode] = []

    @field_validator("outbound_allow", "secret_names", "child_env", mode="before")
    @classmethod
    def _comma_or_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("child_env")
    @classmethod
    def _no_own_settings(cls, value: list[str]) -> list[str]:
        refused = [name for name in value if name.upper().startswith("CHANGELOOP_")]
        if refused:
            raise ValueError(f"CHANGELOOP_CHILD_ENV may not pass the worker's own settings: {', '.join(refused)}")
        return value

    @model_validator(mode="after")
    def _secrets_are_not_child_env(self) -> Settings:
        both = sorted(set(self.child_env) & set(self.secret_names))
        if both:
            raise ValueError(f"CHANGELOOP_CHILD_ENV passes named secrets to every child process: {', '.join(both)}")
        return self

    # -- callers and approvals (README "Security model", config/principals.py, workflows/gate/) ----------------------
    # The shim's callers: name, sha256 of the bearer token, scopes (JSON in the environment), and/or a YAML file of
    # them. WEBHOOK_TOKEN alone (the single-token setup) is the principal `servicenow` with scope change:webhook.
    principals: list[PrincipalConfig] = []
    principals_file: Path | None = None
    # HMAC-SHA256 key shared by the shim and the worker only: the shim signs each decision it relays, the worker
    # checks the signature, so nobody with access to the Temporal frontend can claim "the shim said alice approved".
    decision_key: SecretStr | None = None
    decision_max_age: Duration = timedelta(minutes=5)  # a signed decision older than this on arrival is refused
    # Signs flow-run callbacks (X-Changeloop-Signature); unset: callbacks go unsigned.
    callback_signing_key: SecretStr | None = None
    # Declare that the Temporal cluster itself authorizes who may signal (mTLS + authorizer, Temporal Cloud roles):
    # then `temporal workflow signal/update` decides a gate as the approver it names. Off: such a signal only makes
    # the gate check ServiceNow's approval records now. On in `changeloop dev` and the demo.
    temporal_authorizes_decisions: bool = False
    approval_poll_interval: Duration = timedelta(seconds=60)  # how often a waiting gate re-reads the approvals
    # -- the ticket watch (workflows/change/watch.py, README "Windows, holds and conflicts") ----------------------------
    # How often a running or waiting change re-reads its ticket when no Business Rule hint arrived (hold, cancel,
    # reschedule); and how long a change with no allowed time left in its planned window waits to be rescheduled.
    ticket_poll_interval: Duration = timedelta(seconds=60)
    reschedule_wait: Duration = timedelta(days=14)
    # Business Rule hints that each get a ticket read at once, per change and hour; later ones wait for the poll
    # (a caller who floods hints must not fill a waiting change's history with reads).
    ticket_hint_reads_per_hour: int = Field(default=60, ge=1)
    shim_docs: bool = True  # /docs and /openapi.json (behind a valid token); false: not served at all

    def secret_values(self) -> list[str]:
        """Every configured secret, for the scrubber: whole values, and each item of a list of keys or tokens."""
        values: list[str] = [p.token.get_secret_value() for p in self.principals if p.token]
        for field in SECRET_FIELDS:
            secret = getattr(self, field)
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        # A list of keys or tokens leaks one item at a time: each item (a key without its id) is a secret of its own.
        for field in ("encryption_keys", "codec_tokens"):
            secret = getattr(self, field)
            items = secret.get_secret_value().split(",") if secret is not None else []
            values += [item.rpartition(":")[2].strip() for item in items if item.rpartition(":")[2].strip()]
        return sorted(set(values), key=values.index)

    def short_secrets(self) -> list[str]:
        """The settings whose secret (or one of whose items) is shorter than MIN_SECRET_LENGTH: a process with one
        stops at start (ops/scrub.py `install`), because such a value cannot be scrubbed without shredding text."""
        short = []
        for field in SECRET_FIELDS:
            secret = getattr(self, field)
            if secret is None or not secret.get_secret_value():
                continue
            text = secret.get_secret_value()
            items = [text] if field not in ("encryption_keys", "codec_tokens") else text.split(",")
            if any(0 < len(item.rpartition(":")[2].strip()) < MIN_SECRET_LENGTH for item in items):
                short.append(f"CHANGELOOP_{field.upper()}")
        return short

    def execution_url(self, workflow_id: str, run_id: str | None = None) -> str:
        """Link into the Temporal UI history of one execution; the auditor's way back from the ticket."""
        base = self.ui_url.rstrip("/")
        url = f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
        return f"{url}/{run_id}/history" if run_id else url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
