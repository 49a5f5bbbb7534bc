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

The server answers only requests addressed to it: a Host header other than 127.0.0.1, localhost or
[::1] with its port (or the --host it was given; bound to every interface, any IP address with its port)
gets 421 and no data. A web page on another domain that a DNS-rebinding attack points at 127.0.0.1
sends its own domain as Host, so it cannot read the dataset while the viewer runs. Bound to anything
other than loopback, the server says on stderr that anyone who can reach the port can read the data.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import sys
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
        host = self.headers.get("Host")
        if not self.server.serves_host(host):
            self._json(421, {"error": f"this viewer serves {self.server.url}, not Host {host!r}"})
            return
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


def _bare(name: str) -> str:
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(_bare(name))
    except ValueError:
        return False
    return True


def _is_wildcard(host: str) -> bool:
    return _bare(host) in ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    name = _bare(host.lower())
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: ViewerApp, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.app = app
        self.host = host
        super().__init__((host, port), _Handler)
        self.port = int(self.server_address[1])
        self.names = {"127.0.0.1", "localhost", "::1"}
        self.names.add(_bare(host.lower()))
        self.any_address = _is_wildcard(host)
        if not is_loopback(host):
            sys.stderr.write(f"warning: mmat view listens on {host}:{self.port}, not on loopback: anyone who can "
                             f"reach this port can read the dataset (rows, images, quarantine records)\n")
            sys.stderr.flush()

    def serves_host(self, header: Optional[str]) -> bool:
        """Is `header` (a request's Host) this server's address and port?"""
        if not header:
            return False
        header = header.strip().lower()
        name, _, port = header.rpartition(":") if not header.endswith("]") else (header, "", "")
        if not name or "]" in port:
            name, port = header, ""
        try:
            port_ok = int(port or 80) == self.port
        except ValueError:
            return False
        name = _bare(name)
        if name in self.names:
            return port_ok
        return port_ok and self.any_address and _is_ip(name)

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
