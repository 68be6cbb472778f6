"""PA view selection (method.md §2): cached classifier scores, then a cheap decision.

Two signals: the metadata ``ViewPosition`` and an image classifier of frontal vs lateral.
``score_views`` runs the classifier once per image and caches ``p_lateral``/``p_frontal``
(``views/view_scores.parquet``); ``decide_pa`` applies the rule (metadata says PA and the
classifier does not say lateral) in a separate rule, so changing the rule re-runs seconds of work.

Backends (config ``views.backend``):
- ``xrv``: torchxrayvision's ``baseline_models.xinario.ViewModel`` (chestViewSplit ResNet-50).
  Its constructor hard-codes ``~/.torchxrayvision/models_data``; we build the same module and
  load the state dict from ``views.xrv_weights_dir`` ourselves, so nothing is downloaded and
  nothing depends on ``$HOME``. A missing file is an error naming the file and its URL.
- ``trained``: a tiny CNN (``view_classifier.py``) trained by a rule on the dataset's own
  metadata view labels.
An image that cannot be decoded gets NaN scores and its error in ``error``; the decision marks it
``unreadable image``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.io import write_parquet
from instructx2x.core.ledger import Ledger
from instructx2x.core.errors import MissingInput
from instructx2x.core.images import UnreadableImage, read_gray
from instructx2x.registration import resize

log = logging.getLogger(__name__)

XRV_VIEW_URL = "https://github.com/mlmed/torchxrayvision/releases/download/v1/xinario_chestViewSplit_resnet-50.pt"
XRV_VIEW_FILE = "xinario_chestViewSplit_resnet-50.pt"
FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")
IMAGES_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "image_path")


def require_columns(df: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(columns)}")


def read_images_table(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    require_columns(df, IMAGES_COLUMNS, path)
    if df["dicom_id"].duplicated().any():
        raise ValueError(f"{path}: column dicom_id must be unique")
    return df.sort_values("dicom_id", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- xrv backend
class MissingWeights(MissingInput):
    pass


def load_xrv_view_model(weights_dir):
    """``xrv.baseline_models.xinario.ViewModel`` with weights read from ``weights_dir``."""
    import torch
    import torchvision
    from torch import nn
    from torchxrayvision.baseline_models.xinario import ViewModel

    path = Path(weights_dir) / XRV_VIEW_FILE
    if not path.is_file():
        raise MissingWeights(
            f"view classifier weights not found: {path}. Download {XRV_VIEW_URL} "
            f"and place it as {path} (config views.xrv_weights_dir), or use views.backend: trained"
        )
    model = ViewModel.__new__(ViewModel)
    nn.Module.__init__(model)
    model.weights_filename_local = str(path)
    model.model = torchvision.models.resnet50()
    model.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.model.eval()
    model.norm = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return model.eval()


def _xrv_batch(arrs: list[np.ndarray]):
    import torch

    x = np.stack([resize(a, 224).astype(np.float32) for a in arrs])
    x = (2.0 * (x / 255.0) - 1.0) * 1024.0
    return torch.from_numpy(x)[:, None]


# --------------------------------------------------------------------------- scoring
def score_views(images_path, out_path, backend: str, *, weights_dir=None, model_path=None, batch_size: int = 32) -> pd.DataFrame:
    """Classifier scores for every image of ``images.parquet`` (cached measurement)."""
    import torch

    from instructx2x import view_classifier

    images = read_images_table(images_path)
    torch.set_num_threads(1)
    if backend == "xrv":
        model = load_xrv_view_model(weights_dir)
        prep = _xrv_batch
    elif backend == "trained":
        model = view_classifier.load(model_path)
        prep = view_classifier.batch
    else:
        raise ValueError(f"views.backend must be 'xrv' or 'trained', got {backend!r}")
    p_lat = np.full(len(images), np.nan)
    errors = [""] * len(images)
    arrs, idx = [], []

    def flush():
        if not arrs:
            return
        with torch.no_grad():
            logits = model(prep(arrs)).float()
        probs = torch.softmax(logits[:, :2], dim=1)[:, 1].numpy()
        p_lat[idx] = probs
        arrs.clear()
        idx.clear()

    for i, path in enumerate(images["image_path"]):
        try:
            arrs.append(read_gray(path))
            idx.append(i)
        except UnreadableImage as exc:
            errors[i] = str(exc)
            log.warning("unreadable: %s", exc)
        if len(arrs) >= batch_size:
            flush()
    flush()
    p_lat = np.round(p_lat, 6)
    out = pd.DataFrame(
        {
            "dicom_id": images["dicom_id"].astype(str),
            "backend": backend,
            "p_lateral": p_lat,
            "p_frontal": np.round(1.0 - p_lat, 6),
            "error": errors,
        }
    )
    write_parquet(out, out_path)
    return out


# --------------------------------------------------------------------------- decision
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
