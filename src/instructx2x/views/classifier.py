"""A tiny frontal-vs-lateral CNN trained on the dataset's own metadata view labels, cross-fitted.

For users and demos without the torchxrayvision weights (``views.backend: trained``). Input:
64×64 grey images, each standardised (zero mean, unit variance). Labels: ``ViewPosition`` in
PA/AP → frontal (0), LATERAL/LL → lateral (1); other or missing views are not used for training.
Seeded, single-threaded, so the same data and config give the same weights.

Cross-fitting: patients are split into ``folds`` groups by a stable hash of ``subject_id``
(``fold_of``: CRC32, independent of the other patients); model *f* is trained on the images of
the other folds only and scores the images of fold *f*. So no image is ever scored by a model
that saw it (or any image of its patient) in training: a lateral mislabelled PA is judged by a
model that never learned it as frontal. The model file holds the ``folds`` state dicts.

Memory does not grow with the data: at most ``max_images`` labelled images (a seeded sample) are
read, each reduced to 64² on reading.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd
import torch
from torch import nn

from instructx2x.core.errors import InputError
from instructx2x.core.images import resize_square
from instructx2x.core.io import atomic_path

log = logging.getLogger(__name__)
INPUT_SIZE = 64
FRONTAL = ("PA", "AP")
LATERAL = ("LATERAL", "LL")


class TinyViewCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(32 * 16, 2),  # keeps the layout (lateral vs frontal is a layout)
        )

    def forward(self, x):
        return self.net(x)


def fold_of(subject_id, folds: int) -> int:
    """The cross-fitting fold of a patient (stable: CRC32 of the id as text)."""
    return zlib.crc32(str(subject_id).encode()) % folds


def small(arr: np.ndarray) -> np.ndarray:
    """An image reduced to the classifier's input size (uint8, 64²)."""
    return resize_square(arr, INPUT_SIZE)


def batch(arrs: list[np.ndarray]) -> torch.Tensor:
    x = np.stack([small(a).astype(np.float32) for a in arrs])
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1.0)  # per-image standardised
    return torch.from_numpy(x)[:, None]


def _fit(x: torch.Tensor, y: torch.Tensor, *, seed: int, epochs: int, lr: float) -> TinyViewCNN:
    torch.manual_seed(seed)
    model = TinyViewCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    counts = torch.bincount(y, minlength=2).float()  # class-balanced: lateral images are fewer
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (2 * counts))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), 64):
            idx = perm[start : start + 64]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        log.debug("epoch %d loss %.4f", epoch, float(loss.detach()))
    return model.eval()


def train(images_path, out_path, *, seed: int = 0, epochs: int = 30, max_images: int = 4000, lr: float = 0.003,
          folds: int = 5) -> dict:
    """Train ``folds`` cross-fitted models on the metadata labels of ``images.parquet``.

    Unreadable images are skipped. Raises ``InputError`` when a fold's training images lack
    frontal or lateral examples (e.g. ``source: physionet`` downloads PA images only: use
    ``views.backend: xrv`` there).
    """
    from instructx2x.core.images import UnreadableImage, read_gray

    if folds < 2:
        raise InputError(f"views.folds must be >= 2 (cross-fitting), got {folds}")
    images = pd.read_parquet(images_path).sort_values("dicom_id", kind="stable")
    view = images["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
    labelled = images[view.isin(FRONTAL + LATERAL)].copy()
    labelled["label"] = view[labelled.index].isin(LATERAL).astype(int)
    rng = np.random.default_rng(seed)
    if len(labelled) > max_images:
        labelled = labelled.iloc[np.sort(rng.choice(len(labelled), max_images, replace=False))]
    arrs, labels, fold_ids, skipped = [], [], [], 0
    for path, label, subject in zip(labelled["image_path"], labelled["label"], labelled["subject_id"]):
        try:
            arrs.append(small(read_gray(path)))
        except UnreadableImage:
            skipped += 1
            continue
        labels.append(int(label))
        fold_ids.append(fold_of(subject, folds))
    y_all = np.asarray(labels, dtype=np.int64)
    fold_ids = np.asarray(fold_ids)
    n_lat, n_front = int(y_all.sum()), int(len(y_all) - y_all.sum())
    if n_lat == 0 or n_front == 0:
        raise InputError(
            f"{images_path}: views.backend 'trained' needs frontal and lateral images (ViewPosition) to train the "
            f"view classifier; found {n_front} frontal and {n_lat} lateral readable images. With source: physionet "
            "only PA images are downloaded: use views.backend: xrv (README, 'Using the real data')"
        )
    torch.set_num_threads(1)
    x_all = batch(arrs)
    del arrs
    states, accs = [], []
    for f in range(folds):
        train_idx = np.flatnonzero(fold_ids != f)
        y = torch.from_numpy(y_all[train_idx])
        if len(set(y.tolist())) < 2:
            raise InputError(
                f"{images_path}: cross-fitting fold {f} of {folds} has no "
                f"{'lateral' if int(y.sum()) == 0 else 'frontal'} training image outside its patients; "
                "use fewer views.folds or more patients"
            )
        model = _fit(x_all[train_idx], y, seed=seed + f, epochs=epochs, lr=lr)
        held = np.flatnonzero(fold_ids == f)
        if len(held):
            with torch.no_grad():
                accs.append(float((model(x_all[held]).argmax(1).numpy() == y_all[held]).mean()))
        states.append(model.state_dict())
    with atomic_path(out_path) as tmp:
        torch.save({"folds": folds, "state_dicts": states}, tmp)
    info = {"n_labelled": len(y_all), "n_lateral": n_lat, "skipped_unreadable": skipped, "folds": folds,
            "held_out_accuracy": round(float(np.mean(accs)), 4) if accs else float("nan")}
    log.info("view classifier: %s", info)
    return info


class CrossFitted:
    """The ``folds`` models of a model file; ``model_for(subject_id)`` is the one that never saw that patient."""

    def __init__(self, path):
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or "state_dicts" not in blob:
            raise InputError(f"{path}: not a cross-fitted view model (re-run the views_train rule)")
        self.folds = int(blob["folds"])
        self.models = []
        for sd in blob["state_dicts"]:
            m = TinyViewCNN()
            m.load_state_dict(sd)
            self.models.append(m.eval())

    def fold(self, subject_id) -> int:
        return fold_of(subject_id, self.folds)


def load(path) -> CrossFitted:
    return CrossFitted(path)
