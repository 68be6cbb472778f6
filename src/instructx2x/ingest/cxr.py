"""MIMIC-CXR-JPG and MIMIC-CXR: the images table (metadata, split, labels, files on disk), the
reports table (report files found under the strict id layout) and the studies table.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.ledger import Ledger
from instructx2x.core.tableschema import (
    TableError,
)
from instructx2x.ingest.raw import fail_duplicates, read_raw

log = logging.getLogger(__name__)

CHEXPERT_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)


REPORT_GLOB_RE = re.compile(r"(?:^|/)p[^/]*/p[^/]*/s[^/]*\.txt$")


REPORT_RE = re.compile(r"(?:^|/)p(1\d)/p(1\d{7})/s(5\d{7})\.txt$")


PATIENT_DIR_RE = re.compile(r"p\d{8}")


GROUP_DIR_RE = re.compile(r"p\d{2}")


def study_datetime(dates: pd.Series, times: pd.Series, path: Path) -> pd.Series:
    """``StudyDate`` (YYYYMMDD int) + ``StudyTime`` (HHMMSS.fff float, may be NaN) as timestamps."""
    day = pd.to_datetime(dates.astype("str"), format="%Y%m%d", errors="coerce").astype("datetime64[ns]")
    bad = day.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TableError(f"{path}: line {i + 2}, column 'StudyDate': expected a valid YYYYMMDD date, got {dates.iloc[i]!r}")
    t = times.fillna(0.0).to_numpy(dtype=float)
    hh, mm, ss = t // 10000, (t // 100) % 100, t % 100
    bad = (hh >= 24) | (mm >= 60) | (ss >= 60)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TableError(f"{path}: line {i + 2}, column 'StudyTime': expected HHMMSS.fff, got {times.iloc[i]!r}")
    micros = np.round((hh * 3600 + mm * 60 + ss) * 1e6).astype("int64")
    return day + pd.to_timedelta(micros, unit="us")


def image_rel_paths(df: pd.DataFrame) -> pd.Series:
    sid = df["subject_id"].astype("str")
    return "files/p" + sid.str[:2] + "/p" + sid + "/s" + df["study_id"].astype("str") + "/" + df["dicom_id"] + ".jpg"


def existing_images(root: Path) -> set[str]:
    """Relative paths (``files/...jpg``) of the JPGs present under ``root/files``."""
    found: set[str] = set()
    files = root / "files"
    if not files.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(files):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        found.update(f"{rel}/{f}" for f in filenames if f.endswith(".jpg"))
    return found


def build_images(root: Path, config: dict, ledger: Ledger, listed: set[str] | None = None) -> pd.DataFrame:
    meta, meta_path = read_raw("mimic_cxr_metadata", root, config)
    fail_duplicates(meta, ["dicom_id"], meta_path)
    split, split_path = read_raw("mimic_cxr_split", root, config)
    fail_duplicates(split, ["dicom_id"], split_path)

    subjects_per_study = meta.groupby("study_id")["subject_id"].nunique()
    if (subjects_per_study > 1).any():
        study = int(subjects_per_study[subjects_per_study > 1].index[0])
        i = int(np.flatnonzero((meta["study_id"] == study).to_numpy())[1])
        raise TableError(f"{meta_path}: line {i + 2}, column 'subject_id': study {study} belongs to more than one subject")

    merged = meta.merge(split, on="dicom_id", how="left", suffixes=("", "_split"), validate="one_to_one")
    in_split = merged["split"].notna()
    disagree = in_split & (
        (merged["subject_id_split"] != merged["subject_id"]) | (merged["study_id_split"] != merged["study_id"])
    )
    for dicom_id in merged.loc[disagree, "dicom_id"]:
        ledger.set_aside("image", dicom_id, "split_disagrees", "split file gives another subject/study; split dropped")
    merged.loc[disagree, "split"] = None
    ledger.count("metadata_rows_with_split", len(merged), int((in_split & ~disagree).sum()), str(split_path.name))

    images = meta.copy()
    images["study_datetime"] = study_datetime(meta["StudyDate"], meta["StudyTime"], meta_path)
    images["split"] = merged["split"].astype("str").where(merged["split"].notna(), None)
    images["path"] = image_rel_paths(meta)
    images["image_path"] = str(root.resolve()) + "/" + images["path"]

    present = existing_images(root) if (config["ingest"]["count_missing_images"] or listed is not None) else set()
    if listed is not None:
        unvouched = (images["path"].isin(present) & ~images["path"].isin(listed)).to_numpy()
        for dicom_id, path in zip(images.loc[unvouched, "dicom_id"], images.loc[unvouched, "image_path"]):
            ledger.set_aside(
                "image", dicom_id, "not_in_raw_manifest",
                f"{path}: on disk but not in the raw manifest (quarantined by acquisition, e.g. sha256_mismatch "
                "in the acquire ledger, or added after it); image row dropped",
            )
        ledger.count("images_in_raw_manifest", len(images), int((~unvouched).sum()), "quarantined files are dropped")
        images = images[~unvouched].reset_index(drop=True)
    if config["ingest"]["count_missing_images"]:
        on_disk = images["path"].isin(present)
        ledger.count(
            "image_files_on_disk",
            len(images),
            int(on_disk.sum()),
            "missing JPGs are not an ingest error; later stages check images",
        )
        log.info("%d of %d image files present", int(on_disk.sum()), len(images))
    return images


def build_studies(images: pd.DataFrame, reports: pd.DataFrame, root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    chexpert, chex_path = read_raw("mimic_cxr_chexpert", root, config)
    fail_duplicates(chexpert, ["study_id"], chex_path)
    negbio, negbio_path = read_raw("mimic_cxr_negbio", root, config)  # validated only: nothing downstream uses it
    ledger.count("negbio_rows_validated", len(negbio), len(negbio), negbio_path.name)
    studies = (
        images.groupby(["subject_id", "study_id"], sort=True)
        .agg(StudyDate=("StudyDate", "first"), study_datetime=("study_datetime", "min"))
        .reset_index()
    )
    report_of = reports.drop_duplicates("study_id").set_index("study_id")
    rp = studies["study_id"].map(report_of["report_path"])
    rs = studies["study_id"].map(report_of["subject_id"])
    wrong_subject = rp.notna() & (rs != studies["subject_id"])
    for sid in studies.loc[wrong_subject, "study_id"]:
        ledger.set_aside("report", sid, "report_subject_mismatch", "report folder names another subject than the metadata")
    studies["report_path"] = rp.astype("str").where(rp.notna() & ~wrong_subject, None)
    ledger.count("studies_with_report", len(studies), int(studies["report_path"].notna().sum()))
    labels = chexpert.drop(columns=["subject_id"]).set_index("study_id")
    unknown = ~chexpert["study_id"].isin(studies["study_id"])
    ledger.count("chexpert_rows_matching_a_study", len(chexpert), int((~unknown).sum()), chex_path.name)
    for label in CHEXPERT_LABELS:
        studies[label] = studies["study_id"].map(labels[label]).astype("float64")
    ledger.count("studies_with_chexpert_labels", len(studies), int(studies["study_id"].isin(labels.index).sum()))
    return studies


def find_reports(root: Path, ledger: Ledger) -> list[tuple[int, int, Path]]:
    """Report files under ``root`` by the recursive glob ``**/p*/p*/s*.txt`` (sorted, deterministic).

    Walks only folders that can lead to a report (never into study folders, where DICOMs live).
    Names matching the glob but not the id formats are set aside.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        here = Path(dirpath)
        if PATIENT_DIR_RE.fullmatch(here.name) and GROUP_DIR_RE.fullmatch(here.parent.name):
            dirnames[:] = []  # a patient folder: reports are files here, sub-folders are studies (DICOMs)
        for name in sorted(filenames):
            rel = rel_dir + name
            if not REPORT_GLOB_RE.search("/" + rel):
                continue
            m = REPORT_RE.search("/" + rel)
            if m is None or m.group(2)[:2] != m.group(1):
                ledger.set_aside("report", rel, "bad_report_name", "expected pXX/pSUBJECT/sSTUDY.txt with MIMIC ids")
                continue
            found.append((int(m.group(2)), int(m.group(3)), Path(dirpath) / name))
    return found


def build_reports(root: Path, ledger: Ledger, listed: set[str] | None = None) -> pd.DataFrame:
    rows = []
    seen: set[int] = set()
    found = find_reports(root, ledger)
    for subject_id, study_id, path in found:
        if listed is not None and path.relative_to(root).as_posix() not in listed:
            ledger.set_aside("report", str(path), "not_in_raw_manifest",
                             "on disk but not in the raw manifest (quarantined by acquisition or added after it)")
            continue
        if study_id in seen:
            ledger.set_aside("report", str(path), "duplicate_report", f"a report of study {study_id} was already read")
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            ledger.set_aside("report", str(path), "unreadable_report", f"not UTF-8: {exc}")
            continue
        seen.add(study_id)
        rows.append((subject_id, study_id, str(path.resolve()), text))
    ledger.count("report_files", len(found), len(rows))
    df = pd.DataFrame(rows, columns=["subject_id", "study_id", "report_path", "text"])
    df = df.astype({"subject_id": "int64", "study_id": "int64", "report_path": "str", "text": "str"})
    return df.sort_values(["subject_id", "study_id"], kind="stable").reset_index(drop=True)


