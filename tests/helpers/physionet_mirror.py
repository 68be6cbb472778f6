"""A PhysioNet-like HTTP server on loopback, for tests and benchmarks of the download stage.

It serves a directory in PhysioNet's layout (``<root>/files/<slug>/<version>/...``, i.e. the
``physionet.org`` folder of a ``wget -r`` copy) under ``http://127.0.0.1:<port>/files/``, behind
HTTP Basic auth, with single-range ``Range`` requests (206), ``index.html`` per folder (generated
if absent) and ``SHA256SUMS.txt`` per project (``write_sha256sums``).  Counters record requests and
bytes sent per path; faults can be injected (cut a transfer after N bytes, serve corrupted bytes,
answer 503) to exercise resume, checksum and retry handling.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def write_sha256sums(version_root: str | Path) -> Path:
    """Write ``SHA256SUMS.txt`` the way PhysioNet does (every file except itself and index.html)."""
    root = Path(version_root)
    lines = []
    for path in sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix().encode()):
        rel = path.relative_to(root).as_posix()
        if rel == "SHA256SUMS.txt" or path.name == "index.html":
            continue
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()} {rel}\n")
    out = root / "SHA256SUMS.txt"
    out.write_text("".join(lines))
    return out


def write_index_pages(tree_root: str | Path) -> None:
    """An ``index.html`` listing each folder under ``tree_root`` (as PhysioNet's file browser has)."""
    for dirpath, dirnames, filenames in os.walk(tree_root):
        names = sorted(d + "/" for d in dirnames) + sorted(f for f in filenames if f != "index.html")
        items = "".join(f'<li><a href="{html.escape(n)}">{html.escape(n)}</a></li>' for n in names)
        Path(dirpath, "index.html").write_text(f"<html><body><ul>{items}</ul></body></html>\n")


class PhysioNetMirror:
    """``with PhysioNetMirror(root, user, password) as m: m.base_url`` -> ``http://127.0.0.1:port/files/``."""

    def __init__(self, root: str | Path, username: str, password: str):
        self.root = Path(root)
        self._token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.requests: Counter = Counter()
        self.bytes_sent: Counter = Counter()
        self.statuses: defaultdict = defaultdict(list)
        self.cut_after: dict[str, int] = {}  # path -> bytes after which the next transfer is cut (once)
        self.corrupt: dict[str, int] = {}  # path -> number of transfers to serve with a flipped byte
        self.fail_503: dict[str, int] = {}  # path -> number of 503 answers before serving
        self.latency_s = 0.0  # added before each answer (a stand-in for the round trip to PhysioNet)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/files/"

    def start(self) -> "PhysioNetMirror":
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _status(self, rel: str, code: int):
                with mirror.lock:
                    mirror.statuses[rel].append(code)

            def _plain(self, code: int, text: str, extra: dict | None = None):
                body = text.encode()
                self.send_response(code)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                rel = unquote(urlparse(self.path).path).lstrip("/")
                if mirror.latency_s:
                    time.sleep(mirror.latency_s)
                with mirror.lock:
                    mirror.requests[rel] += 1
                if self.headers.get("Authorization") != f"Basic {mirror._token}":
                    self._status(rel, 401)
                    return self._plain(401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="PhysioNet"'})
                target = (mirror.root / rel).resolve()
                if rel.endswith("/") or target.is_dir():
                    target = target / "index.html"
                if mirror.root.resolve() not in target.parents or not target.is_file():
                    self._status(rel, 404)
                    return self._plain(404, "Not Found")
                with mirror.lock:
                    if mirror.fail_503.get(rel, 0) > 0:
                        mirror.fail_503[rel] -= 1
                        fail = True
                    else:
                        fail = False
                if fail:
                    self._status(rel, 503)
                    return self._plain(503, "Service Unavailable")
                data = target.read_bytes()
                with mirror.lock:
                    if mirror.corrupt.get(rel, 0) > 0:
                        mirror.corrupt[rel] -= 1
                        data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"x"
                    cut = mirror.cut_after.pop(rel, None)
                start = 0
                rng = self.headers.get("Range")
                code = 200
                if rng and rng.startswith("bytes="):
                    first = rng[len("bytes="):].split("-")[0]
                    start = int(first or 0)
                    if start >= len(data):
                        self._status(rel, 416)
                        return self._plain(416, "Range Not Satisfiable", {"Content-Range": f"bytes */{len(data)}"})
                    code = 206
                body = data[start:]
                self._status(rel, code)
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if code == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if cut is not None and cut < len(body):
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    with mirror.lock:
                        mirror.bytes_sent[rel] += cut
                    self.close_connection = True
                    return
                self.wfile.write(body)
                with mirror.lock:
                    mirror.bytes_sent[rel] += len(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "PhysioNetMirror":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def file_requests(self, suffix: str) -> int:
        """Number of GET requests whose path ends with ``suffix`` (e.g. ``.jpg``)."""
        with self.lock:
            return sum(n for p, n in self.requests.items() if p.endswith(suffix))

    def files_served(self, suffix: str) -> set[str]:
        with self.lock:
            return {p for p, codes in self.statuses.items() if p.endswith(suffix) and any(c in (200, 206) for c in codes)}
