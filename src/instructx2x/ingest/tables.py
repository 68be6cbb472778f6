"""Ingest: read the raw tables of the five datasets, validate each against its schema, write typed parquet.

Inputs are located with ``sources.dataset_roots(config)`` (the ``<slug>/<version>/`` folders of
PhysioNet's layout, or ``datasets.<name>.root`` with ``source: local``). Every raw CSV is checked
against ``schemas/tables/raw_*.schema.yaml`` by ``tableschema.read_csv_table``: a malformed file
fails at once with file, line, column and what was expected. Items that are individually bad but
do not make a table unreadable (a report that is not UTF-8, an oddly named report file, a split
row disagreeing with the metadata, an empty Diff-VQA answer or question) go to the ledger and the
run goes on. Missing image files are not an error here (later stages check images); they are
counted in the ledger.

Complete-or-nothing inputs: a demo tree (``source: demo``, or any raw folder holding the demo's
``demo_data.json`` marker) is refused unless the generator finished (its marker says so) and
every file its ``SHA256SUMS.txt`` lists is there. Given the raw manifest (the rule's input), a raw
file that is on disk but not in the manifest (quarantined by acquisition after a checksum
mismatch, or added after it) is set aside and never reaches a table.

Only the dataset roots are ever listed or opened; nothing outside them (in particular the demo's
``ground_truth/``) is read.

Outputs (``results/tables/``): images, studies, patients, admissions, reports, vqa, mimic_all,
diseases, disease_studies, mscxr_boxes (see docs/interfaces.md and schemas/tables/).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.acquire import sources
from instructx2x.core.errors import InputError, MissingInput
from instructx2x.core.ledger import Ledger
from instructx2x.core.tableschema import (
    ID_FORMATS,
    TableError,
    load_schema,
    read_csv_table,
    write_table,
)

log = logging.getLogger(__name__)

STAGE = "ingest"
TABLES = (
    "images",
    "studies",
    "patients",
    "admissions",
    "reports",
    "vqa",
    "mimic_all",
    "diseases",
    "disease_studies",
    "mscxr_boxes",
)
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
RAW_SCHEMAS = (
    "raw_mimic_cxr_metadata",
    "raw_mimic_cxr_split",
    "raw_mimic_cxr_chexpert",
    "raw_mimic_cxr_negbio",
    "raw_mimiciv_patients",
    "raw_mimiciv_admissions",
    "raw_diffvqa_questions",
    "raw_diffvqa_mimic_all",
    "raw_diffvqa_all_diseases",
    "raw_mscxr_boxes",
)
# A report file as the glob **/p*/p*/s*.txt finds it, with the strict id formats of data-contract §0.
REPORT_GLOB_RE = re.compile(r"(?:^|/)p[^/]*/p[^/]*/s[^/]*\.txt$")
REPORT_RE = re.compile(r"(?:^|/)p(1\d)/p(1\d{7})/s(5\d{7})\.txt$")
PATIENT_DIR_RE = re.compile(r"p\d{8}")
GROUP_DIR_RE = re.compile(r"p\d{2}")
MIMICIV_V1_ETHNICITY = [
    "WHITE",
    "BLACK/AFRICAN AMERICAN",
    "ASIAN",
    "HISPANIC/LATINO",
    "AMERICAN INDIAN/ALASKA NATIVE",
    "OTHER",
    "UNKNOWN",
    "UNABLE TO OBTAIN",
]


# --------------------------------------------------------------------------------------------
# Raw table schemas that depend on the dataset version


def _raw_schema(name: str, config: dict) -> dict:
    schema = load_schema(f"raw_{name}")
    if name in ("mimiciv_patients", "mimiciv_admissions"):
        version = str(config["datasets"]["mimiciv"]["version"])
        major = int(version.split(".")[0])
        if major < 2:  # v1.0: core/ folder, `ethnicity` instead of `race`, no admit_provider_id
            schema = copy.deepcopy(schema)
            schema["path"] = schema["path"].replace("hosp/", "core/")
            if name == "mimiciv_admissions":
                cols = [c for c in schema["columns"] if c["name"] != "admit_provider_id"]
                for c in cols:
                    if c["name"] == "race":
                        c["name"] = "ethnicity"
                        c["enum"] = MIMICIV_V1_ETHNICITY
                schema["columns"] = cols
        elif name == "mimiciv_admissions" and version in ("2.0", "2.1"):
            schema = copy.deepcopy(schema)
            schema["columns"] = [c for c in schema["columns"] if c["name"] != "admit_provider_id"]
    return schema


def _read(name: str, root: Path, config: dict, ledger: Ledger | None = None) -> tuple[pd.DataFrame, Path]:
    """A raw table, typed; with ``ledger``, rows with a bad per-item value are set aside there."""
    schema = _raw_schema(name, config)
    path = root / schema["path"]
    log.info("reading %s", path)
    set_aside = None
    if ledger is not None:

        def set_aside(line: int, column: str, value, expected: str) -> None:
            reason = f"empty_{column}" if value == "" else f"bad_{column}"
            ledger.set_aside(
                "table_row", f"{path.name}:{line}", reason,
                f"{path}: line {line}, column '{column}': expected {expected}, got {value!r}; row set aside",
            )

    return read_csv_table(path, schema, set_aside=set_aside), path


def _fail_duplicates(df: pd.DataFrame, keys: list[str], path: Path) -> None:
    dup = df.duplicated(keys, keep="first").to_numpy()
    if dup.any():
        i = int(df.index[int(np.flatnonzero(dup)[0])])
        vals = {k: df[k].loc[i] for k in keys}
        raise TableError(f"{path}: line {i + 2} (data row {i}), column(s) {keys}: expected unique values, {vals} repeats")


# --------------------------------------------------------------------------------------------
# Complete-or-nothing raw trees


def check_demo_complete(config: dict, roots: dict[str, Path]) -> None:
    """Refuse a demo tree the generator did not finish, or one with files missing since."""
    raw = sources.raw_dir(config)
    marker = raw / sources.DEMO_MARKER
    if config["source"] != "demo" and not marker.exists():
        return  # a real dataset copy: a subset of the files is legitimate
    rerun = f"run `instructx2x demo-data {raw}` again (it replaces the folder)"
    if not marker.is_file():
        raise InputError(f"{raw}: incomplete demo dataset: no {sources.DEMO_MARKER} (demo-data writes it last, "
                         f"so it was interrupted or never run); {rerun}")
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{marker}: unreadable completion marker ({exc}); {rerun}") from None
    if not isinstance(info, dict) or info.get("complete") is not True:
        raise InputError(f"{raw}: incomplete demo dataset: {marker.name} says demo-data did not finish; {rerun}")
    missing: list[str] = []
    for name, root in roots.items():
        sums = root / "SHA256SUMS.txt"
        if not sums.is_file():
            missing.append(str(sums))
            continue
        for line in sums.read_text().splitlines():
            rel = line.partition(" ")[2].lstrip(" *")
            if rel and not (root / rel).is_file():
                missing.append(str(root / rel))
    if missing:
        raise InputError(f"{raw}: incomplete demo dataset: {len(missing)} file(s) listed in its SHA256SUMS.txt "
                         f"are missing (first: {missing[0]}); {rerun}")


def manifest_paths(manifest_path: str | Path | None) -> dict[str, set[str]] | None:
    """``{dataset: relative paths}`` of the raw manifest (the files acquisition vouched for)."""
    if manifest_path is None:
        return None
    m = pd.read_parquet(manifest_path, columns=["dataset", "path"])
    return {name: set(group["path"]) for name, group in m.groupby("dataset")}


# --------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG


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
    meta, meta_path = _read("mimic_cxr_metadata", root, config)
    _fail_duplicates(meta, ["dicom_id"], meta_path)
    split, split_path = _read("mimic_cxr_split", root, config)
    _fail_duplicates(split, ["dicom_id"], split_path)

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
    chexpert, chex_path = _read("mimic_cxr_chexpert", root, config)
    _fail_duplicates(chexpert, ["study_id"], chex_path)
    negbio, negbio_path = _read("mimic_cxr_negbio", root, config)  # validated only: nothing downstream uses it
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


# --------------------------------------------------------------------------------------------
# MIMIC-CXR reports


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


# --------------------------------------------------------------------------------------------
# MIMIC-IV


def build_patients_admissions(root: Path, cohort: pd.Series, config: dict, ledger: Ledger):
    patients, p_path = _read("mimiciv_patients", root, config)
    _fail_duplicates(patients, ["subject_id"], p_path)
    keep = patients["subject_id"].isin(cohort)
    ledger.count("patients_in_cxr_cohort", len(patients), int(keep.sum()), p_path.name)
    patients = patients[keep].sort_values("subject_id", kind="stable")

    adm, a_path = _read("mimiciv_admissions", root, config)
    _fail_duplicates(adm, ["hadm_id"], a_path)
    if "ethnicity" in adm.columns:
        adm = adm.rename(columns={"ethnicity": "race"})
    keep = adm["subject_id"].isin(cohort)
    ledger.count("admissions_in_cxr_cohort", len(adm), int(keep.sum()), a_path.name)
    adm = adm.loc[keep, ["subject_id", "hadm_id", "admittime", "race"]]
    adm = adm.sort_values(["subject_id", "admittime", "hadm_id"], kind="stable")
    return patients, adm


# --------------------------------------------------------------------------------------------
# Medical-Diff-VQA


def build_vqa(root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    n_before = len(ledger.entries)
    vqa, path = _read("diffvqa_questions", root, config, ledger)
    vqa["row"] = vqa.index.to_numpy(dtype="int64")  # the data row in the CSV (set-aside rows leave gaps)
    n_aside = len(ledger.entries) - n_before
    ledger.count("vqa_rows", len(vqa) + n_aside, len(vqa), f"{path.name}; rows with an empty/bad question or answer set aside")
    return vqa.reset_index(drop=True)


def build_mimic_all(root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    df, path = _read("diffvqa_mimic_all", root, config)
    _fail_duplicates(df, ["study_id"], path)
    ledger.count("mimic_all_rows", len(df), len(df), path.name)
    return df


def _check_list(value, path: Path, where: str):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TableError(f"{path}: {where}: expected a list of strings or null, got {value!r}")
    return value


def build_diseases(root: Path, config: dict, ledger: Ledger) -> tuple[pd.DataFrame, pd.DataFrame]:
    schema = _raw_schema("diffvqa_all_diseases", config)
    path = root / schema["path"]
    if not path.is_file():
        raise MissingInput(f"{path}: missing; expected Medical-Diff-VQA's all_diseases.json here")
    log.info("reading %s", path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(records, list):
        raise TableError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    record_keys = schema["record_keys"]
    entity_keys = [k["name"] for k in schema["entity_keys"]]
    kinds = {k["name"]: k["kind"] for k in schema["entity_keys"]}
    id_res = {k: re.compile(ID_FORMATS[f"{fmt}_str"]["pattern"]) for k, fmt in schema["ids"].items()}
    ent_rows, study_rows = [], []
    for i, rec in enumerate(records):
        where = f"record {i}"
        if not isinstance(rec, dict) or sorted(rec) != sorted(record_keys):
            got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise TableError(f"{path}: {where}: expected exactly the keys {record_keys}, got {got}")
        for key, rx in id_res.items():
            value = rec[key]
            if not isinstance(value, str) or "/" in value or "\\" in value or ".." in value or not rx.fullmatch(value):
                what = ID_FORMATS[f"{schema['ids'][key]}_str"]["what"]
                raise TableError(f"{path}: {where}, key '{key}': expected {what} (no path separator or '..'), got {value!r}")
        subject_id, study_id = int(rec["subject_id"]), int(rec["study_id"])
        where = f"record {i} (study_id {study_id})"
        entities = rec["entity"]
        if not isinstance(entities, dict):
            raise TableError(f"{path}: {where}, key 'entity': expected an object, got {entities!r}")
        for name, ent in entities.items():
            if not isinstance(ent, dict) or list(ent) != entity_keys:
                got = list(ent) if isinstance(ent, dict) else ent
                raise TableError(f"{path}: {where}, entity '{name}': expected exactly the keys {entity_keys}, got {got}")
            row = [subject_id, study_id, name]
            for key in entity_keys[1:]:
                value = ent[key]
                if kinds[key] == "list_or_null":
                    row.append(_check_list(value, path, f"{where}, entity '{name}', key '{key}'"))
                elif value is not None and not isinstance(value, str):
                    raise TableError(f"{path}: {where}, entity '{name}', key '{key}': expected a string or null, got {value!r}")
                else:
                    row.append(value)
            ent_rows.append(row)
        no_entity = _check_list(rec["no_entity"], path, f"{where}, key 'no_entity'")
        if no_entity is None:
            raise TableError(f"{path}: {where}, key 'no_entity': expected a list of strings, got null")
        study_rows.append((subject_id, study_id, no_entity))
    cols = ["subject_id", "study_id", "entity"] + entity_keys[1:]
    diseases = pd.DataFrame(ent_rows, columns=cols)
    diseases = diseases.astype({"subject_id": "int64", "study_id": "int64", "entity": "str"})
    for key in entity_keys[1:]:
        if kinds[key] != "list_or_null":
            diseases[key] = diseases[key].astype("str")
    studies = pd.DataFrame(study_rows, columns=["subject_id", "study_id", "no_entity"])
    studies = studies.astype({"subject_id": "int64", "study_id": "int64"})
    ledger.count("disease_records", len(records), len(studies), path.name)
    return diseases, studies


# --------------------------------------------------------------------------------------------
# MS-CXR


def build_mscxr(root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    boxes, path = _read("mscxr_boxes", root, config, ledger)
    stem_ok = boxes["path"].str.rsplit("/", n=1).str[-1] == boxes["dicom_id"] + ".jpg"
    bad = (~stem_ok).to_numpy()
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        i = int(boxes.index[j])
        raise TableError(
            f"{path}: line {i + 2}, column 'path': expected the file name to be dicom_id + '.jpg' "
            f"({boxes['dicom_id'].iloc[j]!r}), got {boxes['path'].iloc[j]!r}"
        )
    boxes = boxes.reset_index(drop=True)
    ledger.count("mscxr_boxes", len(boxes), len(boxes), path.name)
    return boxes


# --------------------------------------------------------------------------------------------
# The stage


def _write(df: pd.DataFrame, name: str, out_dir: Path) -> Path:
    path = out_dir / f"{name}.parquet"
    write_table(df.reset_index(drop=True), load_schema(name), path)
    log.info("wrote %s (%d rows)", path, len(df))
    return path


def ingest(config: dict, out_dir: str | Path, ledger_path: str | Path, counts_path: str | Path,
           manifest_path: str | Path | None = None) -> dict[str, int]:
    """Read and validate the raw tables of ``config``'s source, write the typed tables; return row counts.

    ``manifest_path``: the raw manifest of the acquisition stage; raw images and reports not in it
    are set aside (see the module docstring). Without it (the CLI), every file on disk is taken.
    """
    roots = sources.dataset_roots(config)
    for name, root in roots.items():
        if not root.is_dir():
            raise MissingInput(
                f"dataset {name}: folder {root} does not exist; place the dataset there "
                f"(PhysioNet layout <slug>/<version>/) or set datasets.{name}.root"
            )
    check_demo_complete(config, roots)
    listed = manifest_paths(manifest_path)
    out_dir = Path(out_dir)
    ledger = Ledger(STAGE)

    images = build_images(roots["mimic_cxr_jpg"], config, ledger, None if listed is None else listed.get("mimic_cxr_jpg", set()))
    reports = build_reports(roots["mimic_cxr"], ledger, None if listed is None else listed.get("mimic_cxr", set()))
    studies = build_studies(images, reports, roots["mimic_cxr_jpg"], config, ledger)
    cohort = studies["subject_id"].drop_duplicates()
    patients, admissions = build_patients_admissions(roots["mimiciv"], cohort, config, ledger)
    vqa = build_vqa(roots["medical_diff_vqa"], config, ledger)
    mimic_all = build_mimic_all(roots["medical_diff_vqa"], config, ledger)
    diseases, disease_studies = build_diseases(roots["medical_diff_vqa"], config, ledger)
    boxes = build_mscxr(roots["ms_cxr"], config, ledger)

    tables = {
        "images": images,
        "studies": studies,
        "patients": patients,
        "admissions": admissions,
        "reports": reports,
        "vqa": vqa,
        "mimic_all": mimic_all,
        "diseases": diseases,
        "disease_studies": disease_studies,
        "mscxr_boxes": boxes,
    }
    for name, df in tables.items():
        _write(df, name, out_dir)
    ledger.write(ledger_path, counts_path)
    return {name: len(df) for name, df in tables.items()}
