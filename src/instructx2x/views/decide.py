"""The PA decision (rule ``views_pa``): metadata says PA and the cached classifier score does not say lateral."""

from __future__ import annotations

import numpy as np
import pandas as pd

from instructx2x.core.io import write_parquet
from instructx2x.core.ledger import Ledger
from instructx2x.views.tables import read_images_table, require_columns


CODE_MEANING_VIEW = {"postero-anterior": "PA", "antero-posterior": "AP", "lateral": "LATERAL", "left lateral": "LL"}


def _procedure_view(desc) -> str | None:
    """'PA' for a PA-and-lateral study description, 'AP' for an AP/portable one, else None."""
    if not isinstance(desc, str):
        return None
    words = set(desc.upper().replace("(", " ").replace(")", " ").replace("/", " ").split())
    if "PA" in words:
        return "PA"
    if "AP" in words or "PORTABLE" in words:
        return "AP"
    return None


def metadata_pa(images: pd.DataFrame, use_procedure: bool) -> tuple[pd.Series, pd.Series]:
    """Whether the metadata says PA, and a note on how that was decided.

    ``ViewPosition`` (or, when it is empty, ``ViewCodeSequence_CodeMeaning``) decides. With
    ``use_procedure`` (beyond the paper), the study's ``PerformedProcedureStepDescription`` is a
    second vote: an empty view is PA when the procedure is a PA study; ``PA`` in an AP/portable
    study is not trusted; ``AP`` in a PA study that has no other image labelled PA is taken as PA.
    """
    vp = images["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
    if "ViewCodeSequence_CodeMeaning" in images.columns:
        code = images["ViewCodeSequence_CodeMeaning"].map(lambda v: CODE_MEANING_VIEW.get(str(v).strip().lower(), "") if isinstance(v, str) else "")
        vp = vp.where(vp != "", code)
    is_pa = vp == "PA"
    note = pd.Series(np.where(is_pa, "ViewPosition PA", "ViewPosition " + vp.replace("", "missing")), index=images.index)
    note = note.where(vp != "", "ViewPosition missing")
    if use_procedure and "PerformedProcedureStepDescription" in images.columns:
        proc = images["PerformedProcedureStepDescription"].map(_procedure_view)
        study_has_pa = is_pa.groupby(images["study_id"]).transform("any")
        missing_pa = (vp == "") & (proc == "PA")
        contradicted = is_pa & (proc == "AP")
        rescued = (vp == "AP") & (proc == "PA") & ~study_has_pa
        is_pa = (is_pa & ~contradicted) | missing_pa | rescued
        note = note.mask(missing_pa, "ViewPosition missing, procedure PA")
        note = note.mask(contradicted, "ViewPosition PA contradicts an AP procedure")
        note = note.mask(rescued, "ViewPosition AP in a PA study without a PA image")
    return is_pa, note


def decide_pa(images_path, scores_path, out_path, *, lateral_threshold: float = 0.5, use_procedure: bool = False,
              ledger_path=None, counts_path=None) -> pd.DataFrame:
    """PA when metadata says PA and the classifier does not say lateral (p_lateral < threshold)."""
    images = read_images_table(images_path)
    scores = pd.read_parquet(scores_path)
    require_columns(scores, ("dicom_id", "p_lateral", "error"), scores_path)
    df = images[["dicom_id", "subject_id", "study_id", "ViewPosition"]].merge(
        scores[["dicom_id", "p_lateral", "error"]], on="dicom_id", how="left", validate="one_to_one"
    )
    meta_pa, note = metadata_pa(images, use_procedure)
    meta_pa, note = meta_pa.to_numpy(), note.to_numpy()
    unreadable = (df["error"].fillna("").astype(str) != "").to_numpy()
    lateral = (df["p_lateral"] >= lateral_threshold).to_numpy()
    reason = np.select(
        [unreadable, ~meta_pa, lateral],
        ["unreadable image", "metadata not PA", "classifier says lateral"],
        default="",
    )
    df["is_pa"] = reason == ""
    df["reason"] = reason
    df["metadata_note"] = note
    errors = df["error"].fillna("").astype(str).to_numpy()
    df = df.drop(columns=["error"])
    write_parquet(df, out_path)
    ledger = Ledger("views")
    for row, error in zip(df.itertuples(index=False), errors):
        if row.reason == "unreadable image":  # the reader's own one-line reason (decoder message, constant image, size)
            ledger.set_aside("image", row.dicom_id, row.reason, error)
        elif row.reason == "classifier says lateral":
            ledger.set_aside("image", row.dicom_id, row.reason, f"ViewPosition={row.ViewPosition} p_lateral={row.p_lateral}")
    n = len(df)
    n_read = int((~unreadable).sum())
    n_meta = int((~unreadable & meta_pa).sum())
    ledger.count("readable", n, n_read, "images that decode")
    ledger.count("metadata PA", n_read, n_meta, "ViewPosition == PA" + (" (procedure as second vote)" if use_procedure else ""))
    ledger.count("classifier not lateral", n_meta, int(df["is_pa"].sum()), f"p_lateral < {lateral_threshold}")
    if ledger_path:
        ledger.write(ledger_path, counts_path)
    return df
