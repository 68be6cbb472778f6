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
- ``trained``: a tiny CNN (``classifier.py``) trained by a rule on the dataset's own
  metadata view labels.
An image that cannot be decoded gets NaN scores and its error in ``error``; the decision marks it
``unreadable image``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from instructx2x.core.images import UnreadableImage, read_gray
from instructx2x.core.io import write_parquet
from instructx2x.views.tables import read_images_table

log = logging.getLogger(__name__)


def score_views(images_path, out_path, backend: str, *, weights_dir=None, model_path=None, batch_size: int = 32) -> pd.DataFrame:
    """Classifier scores for every image of ``images.parquet`` (cached measurement).

    ``trained``: each image is scored by the cross-fitted model of its patient's fold, which never
    trained on that patient. Images are read one batch at a time (memory does not grow with the data).
    """
    import torch

    from instructx2x.views import classifier, xrv

    images = read_images_table(images_path)
    torch.set_num_threads(1)
    if backend == "xrv":
        models = [xrv.load_xrv_view_model(weights_dir)]
        group = np.zeros(len(images), dtype=int)
        prep = xrv.batch
    elif backend == "trained":
        cross = classifier.load(model_path)
        models = cross.models
        group = np.array([cross.fold(s) for s in images["subject_id"]], dtype=int)
        prep = classifier.batch
    else:
        raise ValueError(f"views.backend must be 'xrv' or 'trained', got {backend!r}")
    p_lat = np.full(len(images), np.nan)
    errors = [""] * len(images)
    pending: dict[int, tuple[list, list]] = {}

    def flush(g):
        arrs, idx = pending.pop(g, ([], []))
        if not arrs:
            return
        with torch.no_grad():
            logits = models[g](prep(arrs)).float()
        p_lat[idx] = torch.softmax(logits[:, :2], dim=1)[:, 1].numpy()

    for i, path in enumerate(images["image_path"]):
        g = int(group[i])
        try:
            arr = read_gray(path)
        except UnreadableImage as exc:
            errors[i] = str(exc)
            log.warning("unreadable: %s", exc)
            continue
        arrs, idx = pending.setdefault(g, ([], []))
        arrs.append(arr)
        idx.append(i)
        if len(arrs) >= batch_size:
            flush(g)
    for g in list(pending):
        flush(g)
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
