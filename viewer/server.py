"""The local web server of `mmat view`: the page (`static/`) and a small JSON API over `viewer.app`.

Standard library only (`http.server.ThreadingHTTPServer`), bound to 127.0.0.1 by default. Routes:

    GET /                   the page            GET /app.js, /app.css   its script and style
    GET /api/info           dataset, formats, sources, splits, filter values
    GET /api/facets         subsets, operators, quarantined count (one pass over the filter index)
    GET /api/rows           a page of the list: ?format=&offset=&limit=&<filters of viewer.filters>
                            (`total` is null when counting would read more footers than the page did)
    GET /api/count          the list's total for the same filters
    GET /api/dialogue       ?format=&id=  one dialogue as labelled turns (404: no such row)
    GET /api/image          ?format=&shard=&row=&i=&size=thumb|full

Every answer sets a Content-Security-Policy that allows no inline script, so even a bug that put row
text into markup could not run it; the page itself only ever inserts row text as text.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

from viewer.app import ViewerApp
from viewer.filters import FilterError
from viewer.store import NotFound, ViewerError

log = logging.getLogger("mmat.viewer")

EXPORT_MARKER = "<!--MMAT_EXPORT-->"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def static_text(name: str) -> str:
    return resources.files("viewer").joinpath("static", name).read_text(encoding="utf-8")


def page_html(export_scripts: str = "") -> str:
    """index.html; the export puts its data scripts where the marker is, the server nothing."""
    return static_text("index.html").replace(EXPORT_MARKER, export_scripts)


class _Handler(BaseHTTPRequestHandler):
    server: "ViewerServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        app = self.server.app
        try:
            if url.path in ("/", "/index.html"):
                self._send(200, page_html().encode("utf-8"), "text/html; charset=utf-8")
            elif url.path.lstrip("/") in STATIC_TYPES:
                name = url.path.lstrip("/")
                self._send(200, static_text(name).encode("utf-8"), STATIC_TYPES[name])
            elif url.path == "/api/info":
                self._json(200, app.info())
            elif url.path == "/api/facets":
                self._json(200, app.facets())
            elif url.path == "/api/rows":
                self._json(200, app.rows(params))
            elif url.path == "/api/count":
                self._json(200, app.count(params))
            elif url.path == "/api/dialogue":
                self._json(200, app.dialogue(params.get("format") or app.format, params.get("id", "")))
            elif url.path == "/api/image":
                body, mime = app.image(params)
                self._send(200, body, mime, cache="max-age=3600")
            else:
                self._json(404, {"error": f"no such page: {url.path}"})
        except NotFound as exc:
            self._json(404, {"error": str(exc)})
        except (FilterError, ViewerError) as exc:
            self._json(400, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - a bug: one line to the page, the traceback to the log
            log.exception("viewer: %s failed", url.path)
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: ViewerApp, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.app = app
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def serve(self, stop_after: Optional[float] = None) -> None:
        """Serve until Ctrl-C, or until `stop_after` seconds have passed (tests: servers stop by themselves)."""
        timer = threading.Timer(stop_after, self.shutdown) if stop_after else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            self.serve_forever(poll_interval=0.2)
        finally:
            if timer:
                timer.cancel()
            self.server_close()
