"""Pairs from difference rows: one PA image per study (deterministic), chronology, ledger reasons."""

from __future__ import annotations

import pandas as pd
import pytest

from instructx2x.core.ledger import read_ledger
from instructx2x.pairs import PAIR_COLUMNS, build_pairs


@pytest.fixture()
def tables(tmp_path):
    # studies of subject 1: 10 (2150-01-01 08:00), 11 (2150-01-01 09:30), 12 (no PA), 13 (PA unreadable)
    images = pd.DataFrame(
        {
            "dicom_id": ["b", "a", "c", "d", "e", "f", "g"],
            "subject_id": [1] * 7,
            "study_id": [10, 10, 10, 11, 12, 13, 11],
            "ViewPosition": ["PA", "PA", "LATERAL", "PA", "AP", "PA", "PA"],
            "StudyDate": [21500101, 21500101, 21500101, 21500101, 21500102, 21500103, 21500101],
            "StudyTime": [80000.0, 80000.0, 80000.0, 93000.5, 1.0, 2.0, 93000.5],
            "image_path": [f"/x/{k}.jpg" for k in "bacdefg"],
        }
    )
    pa = images[["dicom_id", "subject_id", "study_id", "ViewPosition"]].copy()
    pa["p_lateral"] = [0.10, 0.10, 0.9, 0.2, 0.1, float("nan"), 0.05]
    pa["is_pa"] = [True, True, False, True, False, False, True]
    pa["reason"] = ["", "", "metadata not PA", "", "metadata not PA", "unreadable image", ""]
    vqa = pd.DataFrame(
        {
            "study_id": [11, 11, 10, 12, 13, 11],
            "subject_id": [1] * 6,
            "ref_id": [10, 10, 11, 10, 10, 10],
            "question_type": ["difference", "difference", "difference", "difference", "difference", "abnormality"],
            "question": ["q"] * 6,
            "answer": ["nothing has changed.", "dup ", "x ", "y ", "z ", "a"],
            "split": ["train"] * 6,
            "row": [0, 5, 1, 2, 3, 4],
        }
    )
    for name, df in (("images", images), ("pa", pa), ("vqa", vqa)):
        df.to_parquet(tmp_path / f"{name}.parquet")
    return tmp_path


def test_pairs(tables):
    t = tables
    out = build_pairs(t / "vqa.parquet", t / "images.parquet", t / "pa.parquet", t / "pairs.parquet",
                      ledger_path=t / "pairs.tsv", counts_path=t / "pairs.counts.tsv")
    assert list(out.columns) == PAIR_COLUMNS
    by = out.set_index("pair_id")
    assert list(by.index) == ["10_11", "11_10"]
    assert by.loc["11_10", "current_dicom_id"] == "g"  # lowest p_lateral in study 11
    assert by.loc["11_10", "past_dicom_id"] == "a"  # tie on p_lateral: smallest dicom_id
    assert by.loc["11_10", "answer"] == "nothing has changed."  # first difference row by CSV line
    assert by.loc["11_10", "chronological"] and not by.loc["10_11", "chronological"]
    ledger = {r["item_id"]: r["reason"] for r in read_ledger(t / "pairs.tsv")}
    assert ledger == {"12_10": "no PA image", "13_10": "unreadable image"}
    (c,) = read_ledger(t / "pairs.counts.tsv")
    assert (int(c["rows_in"]), int(c["rows_out"])) == (4, 2)
    assert pd.read_parquet(t / "pairs.parquet").equals(out)


def test_require_chronological_and_bad_table(tables):
    t = tables
    out = build_pairs(t / "vqa.parquet", t / "images.parquet", t / "pa.parquet", t / "pairs.parquet",
                      require_chronological=True, ledger_path=t / "pairs.tsv")
    assert list(out["pair_id"]) == ["11_10"]
    assert {r["item_id"]: r["reason"] for r in read_ledger(t / "pairs.tsv")}["10_11"] == "not chronological"
    pd.read_parquet(t / "vqa.parquet").drop(columns=["ref_id"]).to_parquet(t / "vqa.parquet")
    with pytest.raises(ValueError, match=r"vqa.parquet.*ref_id"):
        build_pairs(t / "vqa.parquet", t / "images.parquet", t / "pa.parquet", t / "pairs.parquet")
