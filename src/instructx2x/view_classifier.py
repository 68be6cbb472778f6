"""A tiny frontal-vs-lateral CNN trained on the dataset's own metadata view labels.

For users and demos without the torchxrayvision weights (``views.backend: trained``). Input:
64×64 grey images, each standardised (zero mean, unit variance). Labels: ``ViewPosition`` in PA/AP → frontal (0), LATERAL/LL →
lateral (1); other or missing views are not used for training. Seeded, single-threaded, so the
same data and config give the same weights.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import nn

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


def batch(arrs: list[np.ndarray]) -> torch.Tensor:
    from instructx2x.registration import resize

    x = np.stack([resize(a, INPUT_SIZE).astype(np.float32) for a in arrs])
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1.0)  # per-image standardised
    return torch.from_numpy(x)[:, None]


def train(images_path, out_path, *, seed: int = 0, epochs: int = 30, max_images: int = 4000, lr: float = 0.003) -> dict:
    """Train on metadata labels of ``images.parquet``; unreadable images are skipped."""
    from instructx2x.core.images import UnreadableImage, read_gray

    images = pd.read_parquet(images_path).sort_values("dicom_id", kind="stable")
    view = images["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
    labelled = images[view.isin(FRONTAL + LATERAL)].copy()
    labelled["label"] = view[labelled.index].isin(LATERAL).astype(int)
    rng = np.random.default_rng(seed)
    if len(labelled) > max_images:
        labelled = labelled.iloc[np.sort(rng.choice(len(labelled), max_images, replace=False))]
    arrs, labels, skipped = [], [], 0
    for path, label in zip(labelled["image_path"], labelled["label"]):
        try:
            arrs.append(read_gray(path))
            labels.append(label)
        except UnreadableImage:
            skipped += 1
    if len(set(labels)) < 2:
        raise ValueError(f"{images_path}: need frontal and lateral images (ViewPosition) to train the view classifier")
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x = batch(arrs)
    y = torch.tensor(labels)
    model = TinyViewCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # class-balanced loss: lateral images are fewer than frontal ones
    counts = torch.bincount(y, minlength=2).float()
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
        log.info("epoch %d loss %.4f", epoch, float(loss.detach()))
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    with atomic_path(out_path) as tmp:
        torch.save(model.state_dict(), tmp)
    info = {"n_train": len(y), "n_lateral": int(y.sum()), "skipped_unreadable": skipped, "train_accuracy": acc}
    log.info("view classifier: %s", info)
    return info


def load(path) -> TinyViewCNN:
    model = TinyViewCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
