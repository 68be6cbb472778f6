"""Raw tables of the five datasets: version-dependent schemas, typed reading with per-item set-aside,
duplicate keys, completeness of demo trees and the raw manifest (files acquisition vouched for).

Every raw CSV is checked against ``schemas/tables/raw_*.schema.yaml`` by
``tableschema.read_csv_table``: a malformed file fails at once with file, line, column and what was
expected; with a ledger, rows with a bad per-item value are set aside there.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.acquire import sources
from instructx2x.core.errors import InputError
from instructx2x.core.ledger import Ledger
from instructx2x.core.tableschema import (
    TableError,
    load_schema,
    read_csv_table,
)

log = logging.getLogger(__name__)

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


def raw_schema(name: str, config: dict) -> dict:
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


def read_raw(name: str, root: Path, config: dict, ledger: Ledger | None = None) -> tuple[pd.DataFrame, Path]:
    """A raw table, typed; with ``ledger``, rows with a bad per-item value are set aside there."""
    schema = raw_schema(name, config)
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


def fail_duplicates(df: pd.DataFrame, keys: list[str], path: Path) -> None:
    dup = df.duplicated(keys, keep="first").to_numpy()
    if dup.any():
        i = int(df.index[int(np.flatnonzero(dup)[0])])
        vals = {k: df[k].loc[i] for k in keys}
        raise TableError(f"{path}: line {i + 2} (data row {i}), column(s) {keys}: expected unique values, {vals} repeats")


def check_list(value, path: Path, where: str):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TableError(f"{path}: {where}: expected a list of strings or null, got {value!r}")
    return value


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


