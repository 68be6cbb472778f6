"""Pairs from Medical-Diff-VQA ``difference`` rows (method.md §3).

current = ``study_id`` (the "main" study), past = ``ref_id`` (the "reference" study). One row per
(study_id, ref_id) (the first ``difference`` row by CSV line). Each study contributes one PA
image, chosen by a deterministic rule: among the study's images decided PA
(``views/pa_images.parquet``), the one with the lowest ``p_lateral`` (most confidently frontal),
ties broken by the smallest ``dicom_id``. Pairs where a side has no PA image are set aside in the
ledger (``unreadable image`` when that side's only metadata-PA images could not be decoded).
``chronological`` is true when the past study's (StudyDate, StudyTime) is earlier than the
current one's.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from instructx2x.core.io import write_parquet
from instructx2x.core.ledger import Ledger
from instructx2x.views.tables import require_columns

log = logging.getLogger(__name__)

PAIR_COLUMNS = [
    "pair_id", "subject_id", "current_study_id", "past_study_id", "current_dicom_id", "past_dicom_id",
    "current_image_path", "past_image_path", "answer", "vqa_split", "chronological",
]


def _study_pa(pa: pd.DataFrame, images: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The chosen PA image per study, and the reason for studies without one."""
    chosen = (
        pa[pa["is_pa"]]
        .sort_values(["study_id", "p_lateral", "dicom_id"], kind="stable")
        .drop_duplicates("study_id")
        .merge(images[["dicom_id", "image_path"]], on="dicom_id", how="left")
        .set_index("study_id")
    )
    meta_pa = pa["ViewPosition"].fillna("").astype(str).str.strip().str.upper() == "PA"
    unreadable_pa = set(pa.loc[meta_pa & (pa["reason"] == "unreadable image"), "study_id"])
    reasons = {
        study: ("unreadable image" if study in unreadable_pa else "no PA image")
        for study in pa["study_id"].unique()
        if study not in chosen.index
    }
    return chosen, reasons


def _study_time(images: pd.DataFrame) -> pd.Series:
    t = images.groupby("study_id").agg(date=("StudyDate", "min"), time=("StudyTime", "min"))
    return t["date"].astype("int64") * 1_000_000.0 + t["time"].astype(float).fillna(0.0)


def build_pairs(vqa_path, images_path, pa_path, out_path, *, require_chronological: bool = False, ledger_path=None, counts_path=None) -> pd.DataFrame:
    vqa = pd.read_parquet(vqa_path)
    require_columns(vqa, ("study_id", "subject_id", "ref_id", "question_type", "answer", "split", "row"), vqa_path)
    images = pd.read_parquet(images_path)
    require_columns(images, ("dicom_id", "study_id", "StudyDate", "StudyTime", "image_path"), images_path)
    pa = pd.read_parquet(pa_path)
    require_columns(pa, ("dicom_id", "study_id", "ViewPosition", "p_lateral", "is_pa", "reason"), pa_path)

    diff = vqa[vqa["question_type"] == "difference"].sort_values("row", kind="stable")
    diff = diff.drop_duplicates(["study_id", "ref_id"]).copy()
    diff["pair_id"] = diff["study_id"].astype("int64").astype(str) + "_" + diff["ref_id"].astype("int64").astype(str)
    diff = diff.sort_values("pair_id", kind="stable").reset_index(drop=True)

    chosen, reasons = _study_pa(pa, images)
    ledger = Ledger("pairs")
    rows = []
    for r in diff.itertuples(index=False):
        fate = []
        for side, study in (("current", r.study_id), ("past", r.ref_id)):
            if study not in chosen.index:
                fate.append((side, reasons.get(study, "study has no images")))
        if fate:
            reason = fate[0][1] if len({f[1] for f in fate}) == 1 else "no PA image"
            ledger.set_aside("pair", r.pair_id, reason, "; ".join(f"{s}: {why}" for s, why in fate))
            continue
        cur, past = chosen.loc[r.study_id], chosen.loc[r.ref_id]
        rows.append(
            {
                "pair_id": r.pair_id, "subject_id": int(r.subject_id),
                "current_study_id": int(r.study_id), "past_study_id": int(r.ref_id),
                "current_dicom_id": str(cur["dicom_id"]), "past_dicom_id": str(past["dicom_id"]),
                "current_image_path": str(cur["image_path"]), "past_image_path": str(past["image_path"]),
                "answer": r.answer, "vqa_split": r.split,
            }
        )
    out = pd.DataFrame(rows, columns=PAIR_COLUMNS[:-1])
    times = _study_time(images)
    out["chronological"] = (
        out["past_study_id"].map(times).to_numpy() < out["current_study_id"].map(times).to_numpy()
    ).astype(bool)
    ledger.count("difference rows -> pairs with a PA image on both sides", len(diff), len(out), "see ledger reasons")
    if require_chronological:
        for r in out[~out["chronological"]].itertuples(index=False):
            ledger.set_aside("pair", r.pair_id, "not chronological", "past study is not earlier than the current one")
        n = len(out)
        out = out[out["chronological"]].reset_index(drop=True)
        ledger.count("chronological", n, len(out), "pairs.require_chronological")
    write_parquet(out[PAIR_COLUMNS], out_path)
    if ledger_path:
        ledger.write(ledger_path, counts_path)
    log.info("pairs: %d of %d difference pairs (%d not chronological)", len(out), len(diff), int((~out["chronological"]).sum()))
    return out
