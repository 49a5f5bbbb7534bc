"""`mmat view` answers only requests addressed to it (issue 30): a real server, raw HTTP requests with
the Host header a DNS-rebinding page would send. 421 and no data for a foreign Host; 200 for
127.0.0.1 / localhost / [::1] with the port; a warning on stderr when bound beyond loopback."""
from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.browser import served_view, start_view
from tests.dataset_factory import make_dataset_folder


def raw_get(url: str, path: str, host_header: str | None) -> tuple[int, bytes]:
    """GET `path` from the server at `url` with exactly this Host header (None: no Host line)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        lines = [f"GET {path} HTTP/1.1"] + ([f"Host: {host_header}"] if host_header is not None else [])
        sock.sendall(("\r\n".join(lines + ["Connection: close", "", ""])).encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_dataset_folder(tmp_path_factory.mktemp("host"), n_rows_per_source=2, sources=["tabmwp"])


@pytest.fixture(scope="module")
def served(folder):
    yield from served_view([folder])


@pytest.mark.parametrize("path", ["/", "/api/info", "/api/rows?format=rr", "/api/dialogue?format=rr&id=tabmwp/tabmwp/train-000000",
                                  "/api/image?format=rr&shard=0&row=0&i=0", "/app.js"])
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:{port}", "127.0.0.1.nip.io:{port}",
                                  "127.0.0.1:1", "localhost.attacker.example:{port}", "", None])
def test_a_foreign_host_gets_421_and_no_data(served, path, host):
    port = urlsplit(served).port
    status, body = raw_get(served, path, host.format(port=port) if host is not None else None)
    assert status == 421
    assert b"tabmwp" not in body and b"work_folder" not in body and len(body) < 200


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_its_own_addresses_are_served(served, host):
    status, body = raw_get(served, "/api/info", host.format(port=urlsplit(served).port))
    assert status == 200 and json.loads(body)["sources"] == ["tabmwp"]


def test_binding_beyond_loopback_warns_and_still_checks_the_host(folder):
    proc, url = start_view([folder, "--host", "0.0.0.0"])
    try:
        port = urlsplit(url).port
        local = url.replace("0.0.0.0", "127.0.0.1")
        assert raw_get(local, "/api/info", f"127.0.0.1:{port}")[0] == 200
        assert raw_get(local, "/api/info", f"10.1.2.3:{port}")[0] == 200  # an address of this machine's
        assert raw_get(local, "/api/info", f"attacker.example:{port}")[0] == 421
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "anyone who can reach this port can read the dataset" in err


def test_loopback_binding_does_not_warn(folder):
    proc, url = start_view([folder])
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert "anyone who can reach" not in err
