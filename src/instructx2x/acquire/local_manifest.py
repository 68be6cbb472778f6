"""The raw manifest of a dataset copy already on disk (``source: local``).

Tables (the files ingest reads, plus the small extras of stage 1) are hashed and, where the
project's ``SHA256SUMS.txt`` lists them, checked against it: a mismatch or a missing table stops
the run naming the file.  Other files outside the ``files/`` trees are hashed (not checked); the
files under ``files/`` (images, reports, DICOMs) are listed with their size only:
hashing 377,110 JPGs (~570 GB) would take hours, and the later stages open each image they use
anyway.  ``physionet.verify_local_images: true`` hashes them too; a file whose SHA-256 does not
match is **quarantined**: it is left where it is (your copy is never modified) but kept out of the
raw manifest and recorded in the acquire ledger (``sha256_mismatch``, with both digests). Ingest
takes only files the raw manifest lists, so a quarantined image or report never reaches a table.
``index.html``, ``robots.txt``, ``*.part`` and ``*.gstmp`` files are skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from instructx2x.acquire import sources
from instructx2x.acquire.download import MANIFEST_COLUMNS, SUMS, table_paths
from instructx2x.acquire.fetcher import DownloadError, parse_sha256sums, sha256_file
from instructx2x.core.io import write_parquet
from instructx2x.core.ledger import Ledger

log = logging.getLogger(__name__)

SKIP_NAMES = {"index.html", "robots.txt"}
SKIP_SUFFIXES = (".part", ".gstmp", ".tmp")
OPTIONAL_TABLES = {"mimic-cxr-2.0.0-negbio.csv.gz", "mimic-cxr-reports.zip"}


def build_local_manifest(config: dict, manifest_out: str | Path, ledger_path: str | Path, counts_path: str | Path,
                         verify_images: bool | None = None) -> pd.DataFrame:
    if verify_images is None:
        verify_images = bool((config.get("physionet") or {}).get("verify_local_images", False))
    ledger = Ledger("acquire")
    rows: list[dict] = []
    tables = table_paths(config)
    for name in sources.DATASET_NAMES:
        root = sources.dataset_root(config, name)
        if not root.is_dir():
            raise DownloadError(f"dataset {name}: folder {root} does not exist (source: local; set local.raw_dir or datasets.{name}.root)")
        sums = parse_sha256sums(root / SUMS) if (root / SUMS).is_file() else {}
        if not sums:
            log.warning("%s: no %s; tables are hashed but cannot be checked", root, SUMS)
        table_set = set()
        for rel in tables[name]:
            path = root / rel
            if not path.is_file():
                if rel in OPTIONAL_TABLES:
                    continue
                raise DownloadError(f"dataset {name}: table {path} is missing")
            digest = sha256_file(path)
            if rel in sums and sums[rel] != digest:
                raise DownloadError(f"{path}: SHA-256 {digest} does not match {root / SUMS} ({sums[rel]}); the copy is corrupt")
            table_set.add(rel)
            rows.append(_row(name, rel, digest, path.stat().st_size))
        n_files = n_checked = n_bad = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fname in sorted(filenames):
                if fname in SKIP_NAMES or fname.endswith(SKIP_SUFFIXES):
                    continue
                path = Path(dirpath) / fname
                rel = path.relative_to(root).as_posix()
                if rel in table_set:
                    continue
                n_files += 1
                digest = None
                if not rel.startswith("files/") or (verify_images and rel in sums):
                    digest = sha256_file(path)  # everything outside the image/report trees is small
                if verify_images and rel in sums:
                    n_checked += 1
                    if digest != sums[rel]:
                        n_bad += 1
                        ledger.set_aside(
                            "file", f"{name}/{rel}", "sha256_mismatch",
                            f"{path}: SHA-256 {digest} does not match {SUMS} ({sums[rel]}); quarantined: left in "
                            "place, kept out of the raw manifest, never read downstream. Replace the file to use it.",
                        )
                        log.warning("%s: SHA-256 mismatch; quarantined (not in the raw manifest)", path)
                        continue
                rows.append(_row(name, rel, digest, path.stat().st_size))
        ledger.count(f"{name}_files", n_files, n_files - n_bad,
                     f"{n_checked} checked against {SUMS}; mismatches quarantined" if verify_images else "sizes only")
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    df["size"] = df["size"].astype("int64")
    df["fetched_at"] = df["fetched_at"].astype("string")
    df["sha256"] = df["sha256"].astype("string")
    df = df.sort_values(["dataset", "path"], kind="mergesort").reset_index(drop=True)
    write_parquet(df, manifest_out)
    ledger.write(ledger_path, counts_path)
    log.info("local manifest: %d files, %d bytes", len(df), int(df["size"].sum()))
    return df


def _row(name: str, rel: str, digest: str | None, size: int) -> dict:
    return {"dataset": name, "path": rel, "sha256": digest, "size": int(size), "url": None, "fetched_at": None}
