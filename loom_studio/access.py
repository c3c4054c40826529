"""Who may reach the studio's server: behind Jupyter, only requests that carry its secret.

When Jupyter runs the studio (``loom_studio.lab.proxy``), it draws a random secret,
hands it to the studio's process in ``$LOOM_STUDIO_SECRET`` and adds it to every request
it forwards, in the ``X-Loom-Studio-Secret`` header. The studio refuses (403) any HTTP
request or websocket upgrade without it: another program of this machine that finds the
studio's port cannot go around Jupyter's authentication.

The check sits in front of every route of the server's Tornado application (pages, the
websocket, Bokeh's and Panel's static files, the JSON endpoint), as one routing rule.
"""

from __future__ import annotations

import hmac
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.routing import Matcher, Rule
from tornado.web import Application, HTTPError, RequestHandler

__all__ = ["SECRET_ENV", "SECRET_HEADER", "require_secret"]

SECRET_ENV = "LOOM_STUDIO_SECRET"
SECRET_HEADER = "X-Loom-Studio-Secret"


class _WithoutSecret(Matcher):
    """Matches the requests that do not carry the secret."""

    def __init__(self, secret: str):
        self.secret = secret.encode()

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        given = request.headers.get(SECRET_HEADER, "").encode()
        return None if hmac.compare_digest(given, self.secret) else {}


class _Refuse(RequestHandler):
    """403 for every method (Tornado's access log records it): this server answers only
    through Jupyter."""

    def prepare(self) -> None:
        raise HTTPError(403, reason="Open the studio through Jupyter")


def require_secret(app: Application, secret: str) -> None:
    """Refuse every request to ``app`` that does not carry ``secret`` (403)."""
    if not secret:
        raise ValueError("an empty secret would let every request in")
    router = app.default_router
    router.rules.insert(0, router.process_rule(Rule(_WithoutSecret(secret), _Refuse)))
