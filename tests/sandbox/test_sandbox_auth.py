"""Who may call: basic users, OAuth grants against /oauth_token.do, token expiry and the 401 envelopes."""

from __future__ import annotations

import httpx

from tests.sandbox.support import INTEGRATION, OAUTH_CLIENT, poll

NOT_AUTHENTICATED = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}


def token(emulator_url: str, **form: str) -> httpx.Response:
    client_id, secret = OAUTH_CLIENT
    return httpx.post(f"{emulator_url}/oauth_token.do", data={"client_id": client_id, "client_secret": secret, **form})


def test_missing_or_wrong_basic_credentials_are_401_envelope(emulator) -> None:
    url = f"{emulator.url}/api/now/table/incident"
    for auth in (None, ("admin", "wrong"), ("nobody", "admin")):
        response = httpx.get(url, auth=auth)
        assert response.status_code == 401 and response.json() == NOT_AUTHENTICATED


def test_basic_auth_users_come_from_config(emulator) -> None:
    for user in (("admin", "admin"), INTEGRATION):
        assert httpx.get(f"{emulator.url}/api/now/table/sys_user", auth=user).status_code == 200


def test_password_grant_answers_bearer_token_usable_on_table_api(emulator) -> None:
    user, password = INTEGRATION
    answer = token(emulator.url, grant_type="password", username=user, password=password)
    body = answer.json()
    assert answer.status_code == 200
    assert set(body) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["scope"] == "useraccount" and body["expires_in"] == 1799
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(f"{emulator.url}/api/now/table/incident", headers=headers).status_code == 200


def test_client_credentials_and_refresh_token_grants(emulator) -> None:
    first = token(emulator.url, grant_type="client_credentials").json()
    refreshed = token(emulator.url, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != first["access_token"]
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    created = httpx.post(f"{emulator.url}/api/now/table/cmn_location", json={"name": "via oauth"}, headers=headers)
    assert created.json()["result"]["sys_created_by"] == "changeloop.integration"  # the client's application user


def test_bad_oauth_credentials_are_401_oauth_error(emulator) -> None:
    wrong_secret = httpx.post(
        f"{emulator.url}/oauth_token.do",
        data={"grant_type": "client_credentials", "client_id": "changeloop", "client_secret": "nope"},
    )
    wrong_password = token(emulator.url, grant_type="password", username="admin", password="nope")
    wrong_refresh = token(emulator.url, grant_type="refresh_token", refresh_token="nope")
    for response in (wrong_secret, wrong_password, wrong_refresh):
        assert response.status_code == 401 and response.json()["error"] == "access_denied"
        assert "error_description" in response.json()


def test_expired_access_token_is_401_envelope(emulator, control: httpx.Client) -> None:
    # Long enough that the first call is inside the lifetime even on a loaded machine, short enough to wait out.
    control.put("/config", json={"token_lifetime": 3}).raise_for_status()
    body = token(emulator.url, grant_type="client_credentials").json()
    assert body["expires_in"] == 3
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    url = f"{emulator.url}/api/now/table/incident"
    assert httpx.get(url, headers=headers).status_code == 200
    expired = poll(lambda: (r := httpx.get(url, headers=headers)).status_code == 401 and r, interval=0.2)
    assert expired.json() == NOT_AUTHENTICATED


def test_expire_tokens_control_revokes_every_access_token(emulator, control: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {token(emulator.url, grant_type='client_credentials').json()['access_token']}"}
    control.post("/expire-tokens").raise_for_status()
    assert httpx.get(f"{emulator.url}/api/now/table/incident", headers=headers).status_code == 401
