"""How the shim signs a decision and the worker checks it: HMAC-SHA256 over a canonical form of the decision.

The contract between two processes that share CHANGELOOP_DECISION_KEY (the shim and the worker, nobody else): the
signature travels in the `decide` update and is recorded in history; the key never leaves either process. Anyone
who can reach the Temporal frontend can send a decision, but only the shim can make one that names a principal.
The signature binds the execution, the decision, the approver, the comments and the time it was issued, so a
signature read from one history cannot approve another execution, or say something else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

from workflows.gate.models import DecideInput


def canonical(decision: DecideInput) -> bytes:
    issued = decision.issued_at.isoformat() if decision.issued_at else ""
    fields = {
        "approver": decision.approver,
        "comments": decision.comments,
        "decision": decision.decision.value,
        "execution_id": decision.execution_id,
        "issued_at": issued,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign(key: str, decision: DecideInput) -> str:
    return hmac.new(key.encode(), canonical(decision), hashlib.sha256).hexdigest()


def signed(key: str, decision: DecideInput, execution_id: str, issued_at: datetime) -> DecideInput:
    """The decision as the shim sends it."""
    unsigned = decision.model_copy(update={"execution_id": execution_id, "issued_at": issued_at, "signature": ""})
    return unsigned.model_copy(update={"signature": sign(key, unsigned)})


def signature_valid(key: str, decision: DecideInput) -> bool:
    expected = sign(key, decision.model_copy(update={"signature": ""}))
    return hmac.compare_digest(expected, decision.signature)
