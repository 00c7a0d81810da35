"""The product's one web server: Telegram's and WeChat's webhooks and /healthz in one ASGI app.

Each channel module contributes its routes; this module only composes them.
"""

from __future__ import annotations

import gc
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
    """The ASGI app serving ``routes`` plus GET /healthz, built once everything else is."""
    _settle_start_up()
    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"]), *routes],
                     exception_handlers={404: _not_found, 500: _server_error})


def _settle_start_up() -> None:
    """Keep what start-up loaded out of the cyclic garbage collector's way, once per process.

    The libraries, settings, catalog and calendar loaded by now (some 200,000 objects) live as
    long as the process. Left in the collector's oldest generation, each full collection walks
    them all again and stalls every request in flight for about 100 ms on our two-core hosts.
    """
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()
