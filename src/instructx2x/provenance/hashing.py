"""Content digests of files and directory trees (standard library only: jobs import it in any env).

A directory's digest is the SHA-256 of its sorted ``relative path NUL file SHA-256`` lines, so it
changes when any file inside is added, removed, renamed or changed, and it can be computed either
from the files on disk or from the per-file entries a job record holds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

# Snakemake's own marker inside directory outputs (its mtime is the directory's mtime); never content.
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def is_transient(name: str) -> bool:
    """Files that are never content: Snakemake's directory timestamp and atomic-write temporaries."""
    return name == SNAKEMAKE_TIMESTAMP or (name.startswith(".") and name.endswith(".tmp"))


def walk_files(directory: str | Path) -> Iterator[str]:
    """Relative POSIX paths of the regular files under ``directory`` (sorted, transient files left out).

    Uses ``os.walk`` (directory entries only, no stat per file), so it is cheap enough to run when
    Snakemake builds its DAG.
    """
    directory = str(directory)
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        rel_root = os.path.relpath(root, directory)
        for name in sorted(files):
            if is_transient(name):
                continue
            yield name if rel_root == "." else f"{rel_root}/{name}".replace(os.sep, "/")


def tree_digest(entries: Iterable[tuple[str, str]]) -> str:
    """Digest of a directory from ``(relative path, file SHA-256)`` pairs (any order)."""
    digest = hashlib.sha256()
    for rel, sha in sorted(entries):
        digest.update(f"{rel}\0{sha}\n".encode())
    return digest.hexdigest()


def file_stat(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def hash_tree(directory: str | Path, known: Callable[[str, int, int], str | None] | None = None
              ) -> tuple[str, list[dict]]:
    """Digest of ``directory`` and one entry per file (``rel``, ``sha256``, ``size``, ``mtime_ns``).

    ``known(rel, size, mtime_ns)`` may return a SHA-256 already recorded for a file of exactly that
    size and modification time (then the file is not read again); ``None`` means hash it.
    """
    entries = []
    for rel in walk_files(directory):
        full = os.path.join(str(directory), rel)
        size, mtime_ns = file_stat(full)
        sha = known(rel, size, mtime_ns) if known else None
        entries.append({"rel": rel, "sha256": sha or sha256_file(full), "size": size, "mtime_ns": mtime_ns})
    return tree_digest((e["rel"], e["sha256"]) for e in entries), entries
