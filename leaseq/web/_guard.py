"""The bearer-token check, an ASGI middleware in front of every route.

A middleware rather than a FastAPI dependency so that it also covers the static files,
the OpenAPI document and requests for routes that do not exist.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import unquote

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._page import login_page

COOKIE = "leaseq_token"
"""The cookie the dashboard's login form sets; sent by the browser with every request,
including the server-sent events stream (``EventSource`` cannot send headers)."""

OPEN_PATHS = frozenset({"/healthz", "/static/app.css"})
"""Paths served without the token: liveness and the login page's style sheet."""


class TokenGuard:
    """Refuse every request without ``Authorization: Bearer <token>`` or the cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response: Response
        if scope["path"] == "/" and scope["method"] == "GET":
            response = HTMLResponse(login_page(), status_code=401)
        else:
            response = JSONResponse({"detail": "missing or wrong bearer token"},
                                    status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer realm="leaseq"'})
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        given: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given.append(credential.strip())
            elif name == b"cookie":
                morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
                if morsel is not None:
                    given.append(unquote(morsel.value).encode())
        # compare_digest: the time taken does not tell how much of a guess was right.
        return any(hmac.compare_digest(g, self._token) for g in given)
