"""The annotation datasets: MIMIC-IV patients and admissions (demographics of the cohort),
Medical-Diff-VQA (difference questions, mimic_all, disease tables) and MS-CXR boxes.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.errors import MissingInput
from instructx2x.core.ledger import Ledger
from instructx2x.core.tableschema import (
    ID_FORMATS,
    TableError,
)
from instructx2x.ingest.raw import check_list, fail_duplicates, raw_schema, read_raw

log = logging.getLogger(__name__)


def build_patients_admissions(root: Path, cohort: pd.Series, config: dict, ledger: Ledger):
    patients, p_path = read_raw("mimiciv_patients", root, config)
    fail_duplicates(patients, ["subject_id"], p_path)
    keep = patients["subject_id"].isin(cohort)
    ledger.count("patients_in_cxr_cohort", len(patients), int(keep.sum()), p_path.name)
    patients = patients[keep].sort_values("subject_id", kind="stable")

    adm, a_path = read_raw("mimiciv_admissions", root, config)
    fail_duplicates(adm, ["hadm_id"], a_path)
    if "ethnicity" in adm.columns:
        adm = adm.rename(columns={"ethnicity": "race"})
    keep = adm["subject_id"].isin(cohort)
    ledger.count("admissions_in_cxr_cohort", len(adm), int(keep.sum()), a_path.name)
    adm = adm.loc[keep, ["subject_id", "hadm_id", "admittime", "race"]]
    adm = adm.sort_values(["subject_id", "admittime", "hadm_id"], kind="stable")
    return patients, adm


def build_vqa(root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    n_before = len(ledger.entries)
    vqa, path = read_raw("diffvqa_questions", root, config, ledger)
    vqa["row"] = vqa.index.to_numpy(dtype="int64")  # the data row in the CSV (set-aside rows leave gaps)
    n_aside = len(ledger.entries) - n_before
    ledger.count("vqa_rows", len(vqa) + n_aside, len(vqa), f"{path.name}; rows with an empty/bad question or answer set aside")
    return vqa.reset_index(drop=True)


def build_mimic_all(root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    df, path = read_raw("diffvqa_mimic_all", root, config)
    fail_duplicates(df, ["study_id"], path)
    ledger.count("mimic_all_rows", len(df), len(df), path.name)
    return df


def build_diseases(root: Path, config: dict, ledger: Ledger) -> tuple[pd.DataFrame, pd.DataFrame]:
    schema = raw_schema("diffvqa_all_diseases", config)
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
                    row.append(check_list(value, path, f"{where}, entity '{name}', key '{key}'"))
                elif value is not None and not isinstance(value, str):
                    raise TableError(f"{path}: {where}, entity '{name}', key '{key}': expected a string or null, got {value!r}")
                else:
                    row.append(value)
            ent_rows.append(row)
        no_entity = check_list(rec["no_entity"], path, f"{where}, key 'no_entity'")
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


def build_mscxr(root: Path, config: dict, ledger: Ledger) -> pd.DataFrame:
    boxes, path = read_raw("mscxr_boxes", root, config, ledger)
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


