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

import logging
from pathlib import Path

import pandas as pd

from instructx2x.acquire import sources
from instructx2x.core.errors import MissingInput
from instructx2x.core.ledger import Ledger
from instructx2x.core.tableschema import (
    load_schema,
    write_table,
)
from instructx2x.ingest.annotations import (
    build_diseases,
    build_mimic_all,
    build_mscxr,
    build_patients_admissions,
    build_vqa,
)
from instructx2x.ingest.cxr import build_images, build_reports, build_studies
from instructx2x.ingest.raw import check_demo_complete, manifest_paths

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

