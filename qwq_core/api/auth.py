"""Bearer-token protection of everything ``qwq up`` serves, as one ASGI middleware.

With ``server.token`` set, every request except liveness and the OpenAPI docs needs the token: API clients send
``Authorization: Bearer <token>`` (Prometheus: ``authorization: {credentials: <token>}``); a browser opens
``/?token=<token>`` once, which sets an HttpOnly cookie and redirects to the same page without the token.
Refusals are 401 with ``WWW-Authenticate: Bearer`` and qwq's error body.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from qwq_core.errors import AuthError, error_body

COOKIE = "qwq_token"
PUBLIC = frozenset({"/api/v1/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
"""Liveness and the API's own documentation, which hold no data."""


class TokenAuth:
    """Refuse requests that do not carry ``token``; let everything through when it is ``None``."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
        offered = dict(query).get("token")
        if offered is not None and self._valid(offered) and scope["type"] == "http":
            await self._log_in(scope, [(k, v) for k, v in query if k != "token"], send)
        elif self._valid(_bearer(scope)) or self._valid(_cookie(scope)):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation: handshake refused
        else:
            await _refuse(send)

    def _valid(self, offered: str | None) -> bool:
        assert self.token is not None
        return offered is not None and secrets.compare_digest(offered.encode(), self.token.encode())

    async def _log_in(self, scope: Scope, rest: list[tuple[str, str]], send: Send) -> None:
        location = scope["path"] + (f"?{urlencode(rest)}" if rest else "")
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        headers = [(b"location", location.encode()), (b"set-cookie", cookie.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    scheme, _, credentials = (_header(scope, b"authorization") or "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _cookie(scope: Scope) -> str | None:
    jar: SimpleCookie = SimpleCookie(_header(scope, b"cookie") or "")
    return jar[COOKIE].value if COOKIE in jar else None


async def _refuse(send: Send) -> None:
    message = "missing or wrong token: send 'Authorization: Bearer <token>', or open /?token=<token> once"
    payload = json.dumps(error_body(AuthError(message))).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"www-authenticate", b'Bearer realm="qwq"'),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
