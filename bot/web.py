"""The product's one web server: Telegram's and WeChat's webhooks and /healthz in one ASGI app.

Each channel module contributes its routes; this module only composes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return PlainTextResponse("not found", status_code=404)


async def _server_error(_request: Request, _exc: Exception) -> Response:
    # Never a traceback in a webhook answer; the error is logged by the route that failed.
    return PlainTextResponse("internal error", status_code=500)


def build_web_app(routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app serving ``routes`` plus GET /healthz."""
    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"]), *routes],
                     exception_handlers={404: _not_found, 500: _server_error})
