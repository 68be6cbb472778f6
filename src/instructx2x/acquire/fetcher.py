"""Parallel, resumable, checksum-verified file transfers (the engine under ``instructx2x.acquire.download``).

A ``FileTask`` is one URL, its destination and its expected SHA-256. ``Fetcher`` runs tasks on a
thread pool with one authenticated ``requests`` session per thread: HTTP ``Range`` resume of a
partial ``.part`` file, retries with exponential backoff on transient errors, rename into place
only after the SHA-256 matches; a mismatch is retried from scratch, then the file is moved to the
quarantine folder and reported. A 401/403 stops everything at once (``AuthError``). Credentials
travel only in the HTTP Authorization header. What to fetch (the PhysioNet projects, tables and
images the pipeline needs) is ``instructx2x.acquire.download``'s business.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from instructx2x.acquire.credentials import Credentials
from instructx2x.core.errors import InputError

log = logging.getLogger(__name__)


class DownloadError(InputError):
    """A download stage failed; the message says which files and why (never a password)."""


class AuthError(DownloadError):
    """The server refused the credentials (401/403)."""


class _Transient(Exception):
    pass


def auth_message(status: int, url: str) -> str:
    return (
        f"HTTP {status} for {url}: PhysioNet refused access. Check PHYSIONET_USERNAME/PHYSIONET_PASSWORD "
        "(or ~/.netrc), that this account is credentialed, and that you signed the data use agreement "
        "of this project (on its PhysioNet page) and completed the required training."
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_sha256sums(path: str | Path) -> dict[str, str]:
    """``{relative_path: sha256}`` from a PhysioNet ``SHA256SUMS.txt`` (``<hex> <path>`` per line)."""
    sums: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            digest, sep, rel = line.partition(" ")
            rel = rel.lstrip(" *")
            if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not rel:
                raise DownloadError(f"{path}: line {lineno}: expected '<sha256 hex> <relative path>', got {line[:80]!r}")
            sums[rel] = digest
    return sums


@dataclass
class FileTask:
    dataset: str
    rel: str
    url: str
    dest: Path
    sha256: str | None  # None only for SHA256SUMS.txt itself


@dataclass
class FileResult:
    task: FileTask
    status: str  # ok | present | quarantined | failed
    sha256: str | None = None
    size: int = 0
    transferred: int = 0
    reason: str = ""


@dataclass
class Settings:
    base_url: str = "https://physionet.org/files/"
    workers: int = 4
    retries: int = 5
    backoff_s: float = 1.0
    checksum_retries: int = 2
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 20
    reports: str = "files"
    progress: bool = True

    @classmethod
    def from_config(cls, config: dict, base_url: str | None = None) -> "Settings":
        section = dict(config.get("physionet") or {})
        keys = set(cls.__dataclass_fields__)
        s = cls(**{k: v for k, v in section.items() if k in keys})
        if base_url:
            s.base_url = base_url
        return s


class Fetcher:
    """Parallel, resumable, verified transfers of ``FileTask``s over one authenticated client per thread."""

    def __init__(self, settings: Settings, credentials: Credentials, quarantine_dir: str | Path):
        self.s = settings
        self._auth = credentials.as_auth()
        self.quarantine_dir = Path(quarantine_dir)
        self._local = threading.local()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        sess = getattr(self._local, "session", None)
        if sess is None:
            sess = requests.Session()
            sess.auth = self._auth
            sess.trust_env = False  # no proxy/netrc lookups behind our back
            sess.headers["User-Agent"] = "instructx2x-download"
            self._local.session = sess
        return sess

    # -- one HTTP transfer, resumed from the .part file ------------------------------------------
    def _transfer(self, url: str, part: Path, bar) -> int:
        last = ""
        got = 0
        for attempt in range(self.s.retries + 1):
            if self._stop.is_set():
                raise DownloadError("stopped")
            offset = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                with self._session().get(url, headers=headers, stream=True, timeout=self.s.timeout_s, allow_redirects=True) as r:
                    if r.status_code in (401, 403):
                        raise AuthError(auth_message(r.status_code, url))
                    if r.status_code == 404:
                        raise DownloadError(f"HTTP 404 for {url}: not found (check datasets.*.version and physionet.base_url)")
                    if r.status_code == 416 and offset:
                        return got  # the .part is already complete; the checksum decides
                    if r.status_code == 429 or r.status_code >= 500:
                        raise _Transient(f"HTTP {r.status_code}")
                    if r.status_code == 206 and offset:
                        start = _content_range_start(r.headers.get("Content-Range", ""))
                        if start != offset:
                            part.unlink()  # cannot trust the partial file: start over
                            raise _Transient(f"server resumed at {start}, expected {offset}")
                        mode = "ab"
                    elif r.status_code == 200:
                        mode = "wb"
                    else:
                        raise DownloadError(f"HTTP {r.status_code} for {url}: unexpected status")
                    length = r.headers.get("Content-Length")
                    if bar is not None and length is not None:
                        with self._lock:
                            bar.total = (bar.total or 0) + int(length)
                            bar.refresh()
                    with open(part, mode) as fh:
                        for block in r.iter_content(self.s.chunk_bytes):
                            fh.write(block)
                            got += len(block)
                            if bar is not None:
                                with self._lock:
                                    bar.update(len(block))
                    return got
            except (AuthError, DownloadError):
                raise
            except (requests.RequestException, _Transient, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                log.warning("%s: attempt %d failed (%s); resuming", url, attempt + 1, last)
                if attempt < self.s.retries:
                    time.sleep(self.s.backoff_s * (2**attempt))
        raise DownloadError(f"{url}: failed after {self.s.retries + 1} attempts ({last})")

    # -- one file, verified -----------------------------------------------------------------------
    def fetch(self, task: FileTask, bar=None) -> FileResult:
        dest = task.dest
        if dest.exists():
            if task.sha256 is None:
                return FileResult(task, "present", sha256_file(dest), dest.stat().st_size)
            digest = sha256_file(dest)
            if digest == task.sha256:
                return FileResult(task, "present", digest, dest.stat().st_size)
            log.warning("%s: present but its SHA-256 does not match; fetching again", dest)
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        transferred = 0
        digest = ""
        for attempt in range(self.s.checksum_retries + 1):
            transferred += self._transfer(task.url, part, bar)
            digest = sha256_file(part)
            if task.sha256 is None or digest == task.sha256:
                os.replace(part, dest)
                return FileResult(task, "ok", digest, dest.stat().st_size, transferred)
            log.warning("%s: SHA-256 %s does not match SHA256SUMS.txt (%s), attempt %d", task.url, digest, task.sha256, attempt + 1)
            if attempt < self.s.checksum_retries:
                part.unlink()
        qpath = self.quarantine_dir / task.dataset / task.rel
        qpath.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, qpath)
        reason = f"sha256 {digest} != {task.sha256} after {self.s.checksum_retries + 1} attempts; quarantined at {qpath}"
        log.error("%s: %s", task.url, reason)
        return FileResult(task, "quarantined", digest, qpath.stat().st_size, transferred, reason)

    def fetch_all(self, tasks: list[FileTask], desc: str) -> list[FileResult]:
        """Fetch in parallel; an ``AuthError`` stops every worker and is raised at once."""
        results: list[FileResult] = []
        if not tasks:
            return results
        bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not self.s.progress,
                   file=sys.stderr, mininterval=1.0)
        done = {"n": 0}

        def run(task: FileTask) -> FileResult:
            if self._stop.is_set():
                raise DownloadError("stopped")
            try:
                res = self.fetch(task, bar)
            except AuthError:
                self._stop.set()
                raise
            except DownloadError as exc:
                res = FileResult(task, "failed", reason=str(exc))
            with self._lock:
                done["n"] += 1
                bar.set_postfix_str(f"{done['n']}/{len(tasks)} files", refresh=False)
            return res

        try:
            with ThreadPoolExecutor(max_workers=max(1, int(self.s.workers))) as pool:
                futures = [pool.submit(run, t) for t in tasks]
                finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
                for f in futures:
                    if f.done() and f.exception() is not None:
                        self._stop.set()
                        for p in pending:
                            p.cancel()
                        exc = f.exception()
                        if isinstance(exc, AuthError):
                            raise AuthError(str(exc)) from None
                        raise exc
                results = [f.result() for f in futures]
        finally:
            bar.close()
        return results


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-", value.strip())
    return int(m.group(1)) if m else None
