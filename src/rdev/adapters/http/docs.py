"""`/docs` (Swagger UI) that works offline: its script, style and icon are served by rdev
itself from `/docs-assets/`, never from a CDN.

The files come from the pinned `fastapi-offline` package, which ships Swagger UI builds (rdev
uses nothing else of it: not its app factory). FastAPI's page builder is given those local URLs,
and Swagger UI is told not to call its online validator.

No `/redoc`: the ReDoc build the package ships loads its logo from its vendor's CDN whatever it
is given (seen in the Chromium test), and one offline documentation page is enough."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs-assets"
_FILES = Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the documentation page and its assets (the app is built with docs_url=None and
    redoc_url=None, so FastAPI's CDN pages are not there)."""
    app.mount(ASSETS, StaticFiles(directory=_FILES), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
