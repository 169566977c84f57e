"""`POST /oauth_token.do`: the instance's OAuth token endpoint (form-encoded in, JSON out)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.auth import OAuthError
from sandbox.state import SandboxState

router = APIRouter()


@router.post("/oauth_token.do")
async def oauth_token(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    # Parsed by hand: the form is urlencoded, and python-multipart would be a dependency for nothing.
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    try:
        answer = state.auth.grant(form)
    except OAuthError as exc:
        # The OAuth error shape, not the Table API envelope.
        return JSONResponse({"error": "access_denied", "error_description": exc.description}, status_code=401)
    return JSONResponse(answer.model_dump(), headers={"Cache-Control": "no-store"})
