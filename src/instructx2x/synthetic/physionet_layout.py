"""The PhysioNet ``wget -r`` wrapping: ``physionet.org/robots.txt``, an ``index.html`` per folder,
``SHA256SUMS.txt`` per project (data-contract §1), and the raw manifest rows."""

from __future__ import annotations

import hashlib
import html
import os
from pathlib import Path

ROBOTS = "User-agent: *\nDisallow: /\n"
URL_ROOT = "https://physionet.org/files"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def project_files(root: Path) -> list[str]:
    """Relative paths of every project file, byte-order sorted (``find . -type f | LC_COLLATE=C sort``),
    without SHA256SUMS.txt and the web artefacts (index.html)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f in ("index.html", "SHA256SUMS.txt"):
                continue
            out.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(out, key=lambda p: p.encode("utf-8"))


def write_sha256sums(root: Path) -> list[tuple[str, str, int]]:
    """Write ``SHA256SUMS.txt`` (``'<hex> <path>\\n'``); return (path, sha256, size) of each file."""
    rows = []
    for rel in project_files(root):
        p = root / rel
        rows.append((rel, sha256_file(p), p.stat().st_size))
    (root / "SHA256SUMS.txt").write_text("".join(f"{h} {rel}\n" for rel, h, _ in rows))
    return rows


def write_index_pages(top: Path, url_prefix: str) -> None:
    """One directory-listing ``index.html`` per folder under ``top`` (as wget leaves them)."""
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        rel = Path(dirpath).relative_to(top).as_posix()
        url = f"{url_prefix}/{'' if rel == '.' else rel + '/'}"
        entries = [d + "/" for d in sorted(dirs)] + sorted(f for f in files if f != "index.html")
        body = "\n".join(f'<a href="{html.escape(e)}">{html.escape(e)}</a>' for e in entries)
        Path(dirpath, "index.html").write_text(
            f"<html>\n<head><title>Index of {html.escape(url)}</title></head>\n<body>\n"
            f"<h1>Index of {html.escape(url)}</h1><hr><pre><a href=\"../\">../</a>\n{body}\n</pre><hr></body>\n</html>\n"
        )
