"""Selective, resumable, checksum-verified downloads of the credentialed PhysioNet projects.

Two stages, both writing the layout ``wget -r`` produces (``<raw>/physionet.org/files/<slug>/<version>/``)
so ingest reads downloads exactly as it reads a local copy:

1. ``fetch_tables``: each project's ``SHA256SUMS.txt``, then the tables the pipeline reads (the
   paths come from the ingest table schemas, ``schemas/tables/raw_*.schema.yaml``).
2. ``fetch_images``: from those tables, the exact list of files needed: the metadata-PA images of
   both studies of every Medical-Diff-VQA ``difference`` pair whose two studies each have a PA
   image, the images MS-CXR boxes refer to, and the reports of the pair studies (single report
   files, or members extracted from ``mimic-cxr-reports.zip`` with ``physionet.reports: zip``).

Every file goes through ``instructx2x.acquire.fetcher.Fetcher`` (HTTP ``Range`` resume, retries with
backoff, parallel transfers, renamed into place only after its SHA-256 matches ``SHA256SUMS.txt``,
quarantine of mismatches; a 401/403 stops everything at once). Credentials come from
``instructx2x.acquire.credentials`` and travel only in the HTTP Authorization header.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from instructx2x.acquire import sources
from instructx2x.acquire.credentials import Credentials, get_credentials
from instructx2x.acquire.fetcher import (
    DownloadError,
    Fetcher,
    FileResult,
    FileTask,
    Settings,
    parse_sha256sums,
)
from instructx2x.core.io import write_json, write_parquet
from instructx2x.core.ledger import Ledger
from instructx2x.core.tableschema import load_schema

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["dataset", "path", "sha256", "size", "url", "fetched_at"]
FULL_DATASET_IMAGES = 377_110  # JPGs in MIMIC-CXR-JPG 2.1.0
SUMS = "SHA256SUMS.txt"

# Ingest schema names of the tables each dataset must provide (their paths live in the schemas).
TABLE_SCHEMAS = {
    "mimic_cxr_jpg": ["raw_mimic_cxr_metadata", "raw_mimic_cxr_split", "raw_mimic_cxr_chexpert"],
    "mimic_cxr": [],
    "mimiciv": ["raw_mimiciv_patients", "raw_mimiciv_admissions"],
    "medical_diff_vqa": ["raw_diffvqa_questions", "raw_diffvqa_mimic_all", "raw_diffvqa_all_diseases"],
    "ms_cxr": ["raw_mscxr_boxes"],
}
# Tables read by no parser yet but part of the brief's stage 1 (small).
EXTRA_TABLES = {"mimic_cxr_jpg": ["mimic-cxr-2.0.0-negbio.csv.gz"]}
REPORTS_ZIP = "mimic-cxr-reports.zip"

IMAGE_PATH_RE = re.compile(r"^files/p1\d/p1\d{7}/s5\d{7}/[0-9a-f]{8}(-[0-9a-f]{8}){4}\.jpg$")


def dataset_url(base_url: str, spec: dict, rel: str = "") -> str:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return f"{base}{quote(spec['slug'])}/{quote(spec['version'])}/{quote(rel)}"


# ---------------------------------------------------------------------------------------------------
# What to fetch
# ---------------------------------------------------------------------------------------------------


def table_paths(config: dict) -> dict[str, list[str]]:
    """Relative paths of the stage-1 tables per dataset (from the ingest table schemas)."""
    out: dict[str, list[str]] = {}
    for name in sources.DATASET_NAMES:
        # ingest's own schema resolution (version-dependent paths, e.g. MIMIC-IV 1.0 core/)
        from instructx2x.ingest.raw import raw_schema

        rels = [raw_schema(schema.removeprefix("raw_"), config)["path"] for schema in TABLE_SCHEMAS[name]]
        rels += EXTRA_TABLES.get(name, [])
        if name == "mimic_cxr" and Settings.from_config(config).reports == "zip":
            rels.append(REPORTS_ZIP)
        out[name] = rels
    return out


def report_rel(subject_id: str, study_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}.txt"


def image_rel(subject_id: str, study_id: str, dicom_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


def needed_files(roots: dict[str, Path], ledger: Ledger) -> tuple[list[str], list[str], dict]:
    """(images, reports, stats): the MIMIC-CXR-JPG images and MIMIC-CXR reports the pipeline needs.

    Images: every metadata-PA image (``ViewPosition == "PA"``) of both studies of each Diff-VQA
    ``difference`` pair where both studies have at least one such image, plus every image an MS-CXR
    box refers to.  Reports: those of the studies of the kept pairs.
    """
    meta_path = roots["mimic_cxr_jpg"] / load_schema("raw_mimic_cxr_metadata")["path"]
    vqa_path = roots["medical_diff_vqa"] / load_schema("raw_diffvqa_questions")["path"]
    ms_path = roots["ms_cxr"] / load_schema("raw_mscxr_boxes")["path"]
    meta = _read_columns(meta_path, ["dicom_id", "subject_id", "study_id", "ViewPosition"])
    vqa = _read_columns(vqa_path, ["study_id", "subject_id", "ref_id", "question_type"])
    boxes = _read_columns(ms_path, ["path"])

    pa = meta[meta["ViewPosition"] == "PA"]
    pa_studies = set(pa["study_id"])
    diff = vqa[vqa["question_type"] == "difference"].drop_duplicates(["study_id", "ref_id"])
    keep = diff["study_id"].isin(pa_studies) & diff["ref_id"].isin(pa_studies)
    ledger.count("difference_pairs_with_pa", len(diff), int(keep.sum()), "both studies have a metadata-PA image")
    dropped = diff[~keep]
    sides = dropped["study_id"].isin(pa_studies).map({True: "past", False: "current"})
    for pair, side in zip(dropped["study_id"] + "_" + dropped["ref_id"], sides):
        ledger.set_aside("pair", pair, "no_pa_image", f"{side} study has no metadata-PA image")
    kept = diff[keep]
    wanted = set(kept["study_id"]) | set(kept["ref_id"])
    # subject of each study from the image metadata (the authority for paths)
    studies = pa.loc[pa["study_id"].isin(wanted), ["subject_id", "study_id"]].drop_duplicates()
    imgs = pa[pa["study_id"].isin(wanted)]
    images = {image_rel(s, st, d) for s, st, d in zip(imgs["subject_id"], imgs["study_id"], imgs["dicom_id"])}
    n_pair_images = len(images)
    ms_ok = 0
    for p in sorted(set(boxes["path"])):
        if IMAGE_PATH_RE.match(p):
            images.add(p)
            ms_ok += 1
        else:
            ledger.set_aside("mscxr_image", p, "bad_path", "expected files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg")
    reports = sorted({report_rel(s, st) for s, st in zip(studies["subject_id"], studies["study_id"])})
    stats = {
        "difference_pairs": int(len(diff)),
        "difference_pairs_with_pa": int(keep.sum()),
        "pair_studies": int(len(wanted)),
        "pair_images": n_pair_images,
        "mscxr_images": ms_ok,
        "images_needed": len(images),
        "reports_needed": len(reports),
    }
    return sorted(images), reports, stats


def _read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DownloadError(f"{path}: missing (stage 1 should have fetched it)")
    try:
        return pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False, engine="pyarrow")
    except ValueError as exc:
        raise DownloadError(f"{path}: expected columns {columns}: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------------


def _roots(config: dict, raw_dir: Path) -> dict[str, Path]:
    return {
        name: raw_dir / "physionet.org" / "files" / config["datasets"][name]["slug"] / config["datasets"][name]["version"]
        for name in sources.DATASET_NAMES
    }


def _manifest_rows(results: list[FileResult]) -> list[dict]:
    rows = []
    for r in results:
        if r.status not in ("ok", "present"):
            continue
        mtime = r.task.dest.stat().st_mtime
        rows.append({
            "dataset": r.task.dataset,
            "path": r.task.rel,
            "sha256": r.sha256,
            "size": int(r.size),
            "url": r.task.url,
            "fetched_at": datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    return rows


def _manifest_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    df["size"] = df["size"].astype("int64")
    return df.sort_values(["dataset", "path"], kind="mergesort").reset_index(drop=True)


def _raise_failures(results: list[FileResult], what: str) -> None:
    bad = [r for r in results if r.status in ("failed", "quarantined")]
    if bad:
        lines = "\n".join(f"  {r.task.dataset}/{r.task.rel}: {r.status}: {r.reason}" for r in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DownloadError(f"{what}: {len(bad)} file(s) could not be fetched and verified:\n{lines}{more}")


def _fetcher(config: dict, raw_dir: Path, base_url: str | None, credentials: Credentials | None) -> tuple[Fetcher, Settings]:
    settings = Settings.from_config(config, base_url)
    creds = credentials or get_credentials(settings.base_url)
    log.info("downloading from %s as user %s (credentials from %s)", settings.base_url, creds.username, creds.origin.split(":")[0])
    return Fetcher(settings, creds, raw_dir / "quarantine"), settings


def fetch_tables(config: dict, raw_dir: str | Path, manifest_out: str | Path, base_url: str | None = None,
                 credentials: Credentials | None = None) -> pd.DataFrame:
    """Stage 1: ``SHA256SUMS.txt`` of each project, then the tables; writes the stage-1 manifest."""
    raw_dir = Path(raw_dir)
    fetcher, settings = _fetcher(config, raw_dir, base_url, credentials)
    roots = _roots(config, raw_dir)
    specs = config["datasets"]
    sums_tasks = [FileTask(n, SUMS, dataset_url(settings.base_url, specs[n], SUMS), roots[n] / SUMS, None) for n in sources.DATASET_NAMES]
    results = fetcher.fetch_all(sums_tasks, "SHA256SUMS")
    _raise_failures(results, "stage 1 (SHA256SUMS.txt)")
    tasks = []
    problems = []
    for name, rels in table_paths(config).items():
        sums = parse_sha256sums(roots[name] / SUMS)
        for rel in rels:
            if rel not in sums:
                problems.append(f"{name}: {rel} is not listed in {roots[name] / SUMS}")
                continue
            tasks.append(FileTask(name, rel, dataset_url(settings.base_url, specs[name], rel), roots[name] / rel, sums[rel]))
    if problems:
        raise DownloadError("stage 1: tables missing from the projects' checksum lists:\n  " + "\n  ".join(problems))
    table_results = fetcher.fetch_all(tasks, "tables")
    _raise_failures(table_results, "stage 1 (tables)")
    manifest = _manifest_frame(_manifest_rows(results + table_results))
    write_parquet(manifest, manifest_out)
    log.info("stage 1: %d files, %d bytes", len(manifest), int(manifest["size"].sum()))
    return manifest


def fetch_images(config: dict, raw_dir: str | Path, tables_manifest: str | Path, manifest_out: str | Path,
                 summary_out: str | Path, ledger_path: str | Path, counts_path: str | Path,
                 base_url: str | None = None, credentials: Credentials | None = None) -> dict:
    """Stage 2: the images and reports the tables call for; writes the full raw manifest and a summary."""
    raw_dir = Path(raw_dir)
    fetcher, settings = _fetcher(config, raw_dir, base_url, credentials)
    roots = _roots(config, raw_dir)
    specs = config["datasets"]
    ledger = Ledger("acquire")
    images, reports, stats = needed_files(roots, ledger)
    jpg_sums = parse_sha256sums(roots["mimic_cxr_jpg"] / SUMS)
    total_images = sum(1 for rel in jpg_sums if rel.endswith(".jpg"))

    tasks: list[FileTask] = []
    for rel in images:
        if rel not in jpg_sums:
            ledger.set_aside("image", rel, "not_in_sha256sums", "the MIMIC-CXR-JPG checksum list has no such file")
            continue
        tasks.append(FileTask("mimic_cxr_jpg", rel, dataset_url(settings.base_url, specs["mimic_cxr_jpg"], rel),
                              roots["mimic_cxr_jpg"] / rel, jpg_sums[rel]))
    ledger.count("images_listed", len(images), len(tasks), "needed images present in SHA256SUMS.txt")
    n_image_tasks = len(tasks)
    extracted: list[dict] = []
    if settings.reports == "zip":
        extracted = extract_reports(roots["mimic_cxr"], reports, dataset_url(settings.base_url, specs["mimic_cxr"], REPORTS_ZIP), ledger)
    else:
        cxr_sums = parse_sha256sums(roots["mimic_cxr"] / SUMS)
        for rel in reports:
            if rel not in cxr_sums:
                ledger.set_aside("report", rel, "not_in_sha256sums", "the MIMIC-CXR checksum list has no such report")
                continue
            tasks.append(FileTask("mimic_cxr", rel, dataset_url(settings.base_url, specs["mimic_cxr"], rel),
                                  roots["mimic_cxr"] / rel, cxr_sums[rel]))
    results = fetcher.fetch_all(tasks, "images+reports")
    for r in results:
        if r.status in ("failed", "quarantined"):
            ledger.set_aside("file", f"{r.task.dataset}/{r.task.rel}", r.status, r.reason)
    ledger.write(ledger_path, counts_path)
    _raise_failures(results, "stage 2 (images and reports)")

    image_results = results[:n_image_tasks]
    stage1 = pd.read_parquet(tables_manifest)
    manifest = _manifest_frame(stage1.to_dict("records") + _manifest_rows(results) + extracted)
    write_parquet(manifest, manifest_out)
    image_bytes = int(sum(r.size for r in image_results))
    summary = {
        **stats,
        "images_fetched_or_present": len(image_results),
        "images_transferred": sum(1 for r in image_results if r.status == "ok"),
        "images_in_dataset": total_images,
        "images_in_full_release": FULL_DATASET_IMAGES,
        "image_fraction_of_dataset": round(len(image_results) / total_images, 6) if total_images else None,
        "image_bytes": image_bytes,
        "reports_fetched_or_present": len(results) - n_image_tasks + len(extracted),
        "manifest_files": int(len(manifest)),
        "manifest_bytes": int(manifest["size"].sum()),
        "bytes_transferred_this_run": int(sum(r.transferred for r in results)),
    }
    write_json(summary, summary_out)
    log.info("stage 2: %d of %d images (%.3f%%), %d bytes of images; %d reports",
             summary["images_fetched_or_present"], total_images,
             100 * (summary["image_fraction_of_dataset"] or 0), image_bytes, summary["reports_fetched_or_present"])
    return summary


def extract_reports(root: Path, reports: list[str], zip_url: str, ledger: Ledger) -> list[dict]:
    """Extract the needed reports from ``mimic-cxr-reports.zip`` into ``root/files/...``; manifest rows."""
    zpath = root / REPORTS_ZIP
    wanted = {re.search(r"p1\d/p1\d{7}/s5\d{7}\.txt$", r).group(0): r for r in reports}
    rows = []
    found = set()
    fetched_at = datetime.fromtimestamp(zpath.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(zpath) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            m = re.search(r"p1\d/p1\d{7}/s5\d{7}\.txt$", info.filename)
            if not m or m.group(0) not in wanted or m.group(0) in found:
                continue
            rel = wanted[m.group(0)]
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = zf.read(info)
            tmp = dest.with_name(dest.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            found.add(m.group(0))
            rows.append({"dataset": "mimic_cxr", "path": rel, "sha256": hashlib.sha256(data).hexdigest(),
                         "size": len(data), "url": f"{zip_url}#{info.filename}", "fetched_at": fetched_at})
    for key, rel in wanted.items():
        if key not in found:
            ledger.set_aside("report", rel, "not_in_zip", f"{REPORTS_ZIP} has no member ending in {key}")
    return rows


def download(config: dict, dest: str | Path, base_url: str | None = None, credentials: Credentials | None = None) -> dict:
    """Both stages into ``dest`` (``dest/physionet.org/files/...``), outside Snakemake."""
    dest = Path(dest)
    tables_manifest = dest / "physionet_tables_manifest.parquet"
    fetch_tables(config, dest, tables_manifest, base_url, credentials)
    return fetch_images(
        config, dest, tables_manifest, dest / "physionet_manifest.parquet", dest / "physionet_summary.json",
        dest / "ledger" / "acquire.tsv", dest / "ledger" / "acquire.counts.tsv", base_url, credentials,
    )


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    from instructx2x.core.cliargs import positive_int

    p = subparsers.add_parser(
        "download",
        help="fetch the needed PhysioNet files (tables, then only the needed images/reports), verified",
        description="Download from PhysioNet into DEST/physionet.org/files/<slug>/<version>/. Credentials: "
        "PHYSIONET_USERNAME/PHYSIONET_PASSWORD or ~/.netrc (never on the command line).",
    )
    p.add_argument("--dest", required=True, help="directory to download into")
    p.add_argument("--base-url", default=None, help="default: physionet.base_url of the config")
    p.add_argument("--config", default="config.yaml", help="pipeline config (dataset versions, physionet section)")
    p.add_argument("--workers", type=positive_int, default=None, help="parallel transfers (default physionet.workers)")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from instructx2x.core.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    overrides = {"physionet": {"workers": args.workers}} if args.workers is not None else None
    config = load_config(args.config, overrides)
    summary = download(config, args.dest, args.base_url)  # DownloadError/CredentialsError: one line, exit 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m instructx2x.acquire.download --dest DIR ...``: the same as ``instructx2x download``."""
    from instructx2x.cli import main as cli_main

    return cli_main(["download", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
