"""The Lookout web UI (source in ``lookout-ui/``), served by the Lookout API's own app: the
built files ship inside the package (``ui_dist/``), so ``flotilla up`` needs no Node.

``/`` and the UI's own routes (``/jobs/<job id>``, ``/jobsets``) answer with ``index.html``,
which the browser then renders from the URL, so a link or a reload reproduces the view. Assets
have content-hashed names and are cached for good; ``index.html`` is revalidated each time,
so a new build shows at the next load.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).with_name("ui_dist")
UI_ROUTES = ("/", "/jobs/{job_id}", "/jobsets")


async def _index(request: web.Request) -> web.StreamResponse:
    index = UI_DIR / "index.html"
    if not index.is_file():
        return web.json_response(
            {"error": f"the web UI is not built: no {index} (scripts/check-ui builds it)"}, status=404
        )
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


async def _asset(request: web.Request) -> web.StreamResponse:
    # {name} matches no "/", so a request cannot leave the assets directory.
    path = UI_DIR / "assets" / request.match_info["name"]
    if not path.is_file():
        raise web.HTTPNotFound(text=f"no asset {request.match_info['name']!r}")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})


def add_web_ui(app: web.Application) -> None:
    """Serve the UI at ``/`` beside the API routes already on ``app``."""
    for route in UI_ROUTES:
        app.router.add_get(route, _index)
    app.router.add_get("/assets/{name}", _asset)
