"""Evaluator backends: one object that maps grey images to pathology probabilities, race
probabilities, predicted age and a feature vector (for FID).

- ``xrv``: torchxrayvision 1.5.7: ``densenet121-res224-all`` (pathologies; ``features2`` = the
  1024-d pooled features for FID), ``baseline_models.riken.AgeModel`` and
  ``baseline_models.emory_hiti.RaceModel``. Preprocessing as the library expects: 8-bit image ->
  [-1024, 1024] (``xrv.datasets.normalize(img, 255)``), ``XRayCenterCrop``, then resized to the
  model's input size (224 for the DenseNet, 320 for the age and race models). Weights are read
  only from ``weights_dir`` (nothing is downloaded): a missing file is an error naming the file
  and its URL. The baseline models hard-code ``~/.torchxrayvision/models_data``; they are built
  with ``HOME`` pointed, for the duration of the constructor only, at a private temporary
  directory holding symlinks to the configured files.
- ``trained``: a small multi-task CNN (shared trunk; heads for the 5 findings, the 3 race
  groups and age) trained by :func:`train_evaluator` on the training split's real images; its
  64-d trunk output is the feature extractor for FID. Its own held-out scores are recorded
  beside the weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from instructx2x.core.errors import InputError, MissingInput
from instructx2x.core.paths import read_parquet
from instructx2x.evaluation.labels import FINDINGS, RACES, pair_targets
from instructx2x.core.io import atomic_path, write_json

log = logging.getLogger(__name__)

XRV_URL = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
XRV_FILES = {
    "densenet": "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "age": "baseline_models_riken_xray_age_every_model_age_senet154_v2_tl_26_ft_7_fp32.pt",
    "race": "resnet_race_detection_val-loss_0.157_mimic_public.pt",
}
# torchxrayvision's name for each Table 2 finding
XRV_FINDING = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Edema": "Edema",
               "Pleural Effusion": "Effusion", "Pneumothorax": "Pneumothorax"}


class MissingWeights(MissingInput):
    pass


def _read(path) -> np.ndarray:
    from instructx2x.core.images import read_gray

    return read_gray(path)


def check_xrv_weights(weights_dir) -> dict:
    """Paths of the three weight files; raises ``MissingWeights`` naming each missing file and its URL."""
    weights_dir = Path(os.path.expanduser(str(weights_dir)))
    paths = {k: weights_dir / f for k, f in XRV_FILES.items()}
    missing = [f"{p} (download from {XRV_URL}{p.name})" for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingWeights("evaluation.xrv_weights_dir: missing weight file(s): " + "; ".join(missing))
    return paths


@contextlib.contextmanager
def _home_with_weights(paths: dict):
    """HOME -> a temporary dir whose ~/.torchxrayvision/models_data links to the given files."""
    old = os.environ.get("HOME")
    with tempfile.TemporaryDirectory(prefix="ix2x_xrv_home_") as home:
        cache = Path(home) / ".torchxrayvision" / "models_data"
        cache.mkdir(parents=True)
        for p in paths.values():
            (cache / p.name).symlink_to(p.resolve())
        os.environ["HOME"] = home
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = old


class XrvEvaluator:
    name = "xrv"
    feature_dim = 1024

    def __init__(self, weights_dir, batch_size: int = 16):
        import torchxrayvision as xrv

        paths = check_xrv_weights(weights_dir)
        self.xrv = xrv
        self.batch_size = batch_size
        self.densenet = xrv.models.DenseNet(weights="densenet121-res224-all", cache_dir=str(paths["densenet"].parent)).eval()
        with _home_with_weights(paths):
            self.age_model = xrv.baseline_models.riken.AgeModel().eval()
            self.race_model = xrv.baseline_models.emory_hiti.RaceModel().eval()
        self.patho_idx = [self.densenet.pathologies.index(XRV_FINDING[f]) for f in FINDINGS]
        assert list(self.race_model.targets) == list(RACES), self.race_model.targets

    def _prep(self, arr: np.ndarray, size: int) -> np.ndarray:
        img = self.xrv.datasets.normalize(arr, 255)[None, ...]
        img = self.xrv.datasets.XRayCenterCrop()(img)
        return _resize_float(img, size)

    @torch.no_grad()
    def predict(self, paths) -> dict:
        out = {"patho": [], "race": [], "age": [], "features": []}
        paths = list(paths)
        for s in range(0, len(paths), self.batch_size):
            arrs = [_read(p) for p in paths[s : s + self.batch_size]]
            x224 = torch.from_numpy(np.stack([self._prep(a, 224) for a in arrs]))
            x320 = torch.from_numpy(np.stack([self._prep(a, 320) for a in arrs]))
            probs = self.densenet(x224)
            out["patho"].append(probs[:, self.patho_idx].numpy())
            out["features"].append(self.densenet.features2(x224).numpy())
            out["race"].append(torch.exp(self.race_model(x320)).numpy())
            out["age"].append(self.age_model(x320).reshape(-1).numpy())
        return _stack(out, self.feature_dim)


def _resize_float(img: np.ndarray, size: int) -> np.ndarray:
    """[1,H,W] float -> [1,size,size] (antialiased bilinear, like xrv's fix_resolution)."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
    if t.shape[-1] != size:
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].numpy()


def _stack(out: dict, dim: int) -> dict:
    if not out["patho"]:
        return {"patho": np.zeros((0, len(FINDINGS))), "race": np.zeros((0, len(RACES))), "age": np.zeros(0), "features": np.zeros((0, dim))}
    return {k: np.concatenate(v).astype("float64") for k, v in out.items()}


# --------------------------------------------------------------------------- trained backend

TRAINED_SIZE = 64


class SmallEvaluatorCNN(nn.Module):
    """Shared trunk (64-d features) with pathology, race and age heads."""

    feature_dim = 64

    def __init__(self):
        super().__init__()
        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
        self.trunk = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), *block(64, 64),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.patho = nn.Linear(64, len(FINDINGS))
        self.race = nn.Linear(64, len(RACES))
        self.age = nn.Linear(64, 1)

    def forward(self, x):
        f = self.trunk(x)
        return self.patho(f), self.race(f), self.age(f)[:, 0], f


def _batch(arrs) -> torch.Tensor:
    from instructx2x.registration import resize

    return torch.from_numpy(np.stack([resize(a, TRAINED_SIZE).astype(np.float32) / 255.0 for a in arrs]))[:, None]


class TrainedEvaluator:
    name = "trained"
    feature_dim = SmallEvaluatorCNN.feature_dim

    def __init__(self, model_path, batch_size: int = 64):
        if not os.path.isfile(model_path):
            raise MissingInput(f"{model_path}: no such evaluator model file; expected trained_evaluator.pt (rule evaluation_train)")
        self.model = SmallEvaluatorCNN()
        try:
            blob = torch.load(model_path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(blob["state_dict"])
            self.age_mean, self.age_std = blob["age_mean"], blob["age_std"]
        except Exception as exc:  # noqa: BLE001 - not a torch file, another model's weights, a truncated file
            reason = " ".join(str(exc).split())[:200]
            raise InputError(f"{model_path}: not an evaluator model written by evaluation_train "
                             f"({type(exc).__name__}: {reason})") from None
        self.model.eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def predict(self, paths) -> dict:
        out = {"patho": [], "race": [], "age": [], "features": []}
        paths = list(paths)
        for s in range(0, len(paths), self.batch_size):
            p, r, a, f = self.model(_batch([_read(q) for q in paths[s : s + self.batch_size]]))
            out["patho"].append(torch.sigmoid(p).numpy())
            out["race"].append(torch.softmax(r, 1).numpy())
            out["age"].append((a * self.age_std + self.age_mean).numpy())
            out["features"].append(f.numpy())
        return _stack(out, self.feature_dim)


def training_images(instructions: pd.DataFrame, studies, patients, admissions, *, splits, uncertain, missing, race_rule) -> pd.DataFrame:
    """Real images of the given splits (current and past image of each pair) with their own study's targets."""
    need = ["pair_id", "subject_id", "split", "past_image", "current_image"]
    absent = [c for c in need if c not in instructions.columns]
    if absent:
        raise ValueError(f"instructions: missing columns {absent}")
    ins = instructions[instructions["split"].isin(splits)]
    studies_of = ins["pair_id"].astype(str).str.split("_")
    rows = pd.concat([
        pd.DataFrame({"pair_id": ins["pair_id"] + ":current", "subject_id": ins["subject_id"], "split": ins["split"],
                      "current_study_id": studies_of.str[0].astype("int64"), "image": ins["current_image"]}),
        pd.DataFrame({"pair_id": ins["pair_id"] + ":past", "subject_id": ins["subject_id"], "split": ins["split"],
                      "current_study_id": studies_of.str[1].astype("int64"), "image": ins["past_image"]}),
    ]).drop_duplicates("image").sort_values("pair_id", kind="stable")
    t = pair_targets(rows, studies, patients, admissions, uncertain=uncertain, missing=missing, race_rule=race_rule)
    return t.merge(rows[["pair_id", "split", "image"]], on="pair_id")


def train_evaluator(instructions_path, studies_path, patients_path, admissions_path, out_model, out_info, *,
                    seed: int = 0, epochs: int = 30, uncertain="zero", missing="zero", race_rule="consistent",
                    max_images: int = 4000, lr: float = 3e-3) -> dict:
    """Train the ``trained`` backend on the train split; held-out scores on the val split
    (or, if it has no images, on a seeded 20% of the train images kept out of training)."""
    from instructx2x.evaluation import metrics as M

    ins = read_parquet(instructions_path)  # image paths resolved (core.paths)
    tables = [pd.read_parquet(p) for p in (studies_path, patients_path, admissions_path)]
    kw = dict(uncertain=uncertain, missing=missing, race_rule=race_rule)
    train_df = training_images(ins, *tables, splits=["train"], **kw)
    held_df = training_images(ins, *tables, splits=["val"], **kw)
    rng = np.random.default_rng(seed)
    held_source = "val split"
    if len(held_df) < 10:
        perm = rng.permutation(len(train_df))
        n_held = max(1, len(train_df) // 5)
        held_df, train_df = train_df.iloc[np.sort(perm[:n_held])], train_df.iloc[np.sort(perm[n_held:])]
        held_source = "20% of the train images held out (val split too small)"
    if len(train_df) > max_images:
        train_df = train_df.iloc[np.sort(rng.choice(len(train_df), max_images, replace=False))]
    if len(train_df) < 4:
        raise ValueError(f"{instructions_path}: only {len(train_df)} training images for the evaluator")
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x = _batch([_read(p) for p in train_df["image"]])
    y_p = torch.tensor(train_df[list(FINDINGS)].to_numpy(dtype="float32"))
    race_idx = torch.tensor([RACES.index(r) if isinstance(r, str) else -1 for r in train_df["race"]])
    age = torch.tensor(train_df["age"].to_numpy(dtype="float32"))
    age_ok = torch.isfinite(age)
    age_mean = float(age[age_ok].mean()) if age_ok.any() else 0.0
    age_std = float(age[age_ok].std()) if age_ok.sum() > 1 else 1.0
    age_std = age_std or 1.0
    model = SmallEvaluatorCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    ce = nn.CrossEntropyLoss(ignore_index=-1)
    losses = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        tot = 0.0
        for s in range(0, len(x), 32):
            i = perm[s : s + 32]
            xb = x[i]
            if torch.rand(1, generator=gen) < 0.5:  # light augmentation: small shift
                xb = torch.roll(xb, shifts=int(torch.randint(-3, 4, (1,), generator=gen)), dims=3)
            p, r, a, _ = model(xb)
            yb = y_p[i]
            ok = torch.isfinite(yb)
            loss = (bce(p, torch.nan_to_num(yb)) * ok).sum() / ok.sum().clamp(min=1)
            if (race_idx[i] >= 0).any():
                loss = loss + ce(r, race_idx[i])
            ai = age_ok[i]
            if ai.any():
                loss = loss + ((a[ai] - (age[i][ai] - age_mean) / age_std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(i)
        losses.append(tot / len(x))
        log.info("evaluator epoch %d loss %.4f", epoch, losses[-1])
    model.eval()
    with atomic_path(out_model) as tmp:
        torch.save({"state_dict": model.state_dict(), "age_mean": age_mean, "age_std": age_std,
                    "findings": list(FINDINGS), "races": list(RACES), "input_size": TRAINED_SIZE}, tmp)
    ev = TrainedEvaluator(out_model)
    pred = ev.predict(held_df["image"])
    labels = held_df[list(FINDINGS)].to_numpy(dtype="float64")
    ridx = np.array([RACES.index(r) if isinstance(r, str) else -1 for r in held_df["race"]])
    per = M.patho_aurocs(labels, pred["patho"], FINDINGS)
    ok = ridx >= 0
    info = {
        "backend": "trained",
        "n_train_images": int(len(train_df)),
        "n_heldout_images": int(len(held_df)),
        "heldout_source": held_source,
        "epochs": epochs,
        "final_train_loss": losses[-1],
        "train_loss": losses,
        "heldout": M.clean({
            "patho_auroc_per_finding": per,
            "patho_auroc": float(np.nanmean(list(per.values()))) if np.any(np.isfinite(list(per.values()))) else float("nan"),
            "race_accuracy": float((pred["race"][ok].argmax(1) == ridx[ok]).mean()) if ok.any() else float("nan"),
            "race_auroc": M.race_auroc(ridx, pred["race"]),
            "age_mae_years": float(np.nanmean(np.abs(pred["age"] - held_df["age"].to_numpy(dtype="float64")))) if len(held_df) else float("nan"),
            "age_pearson": M.age_pearson(held_df["age"], pred["age"]),
        }),
    }
    write_json(info, out_info)
    log.info("trained evaluator held-out: %s", json.dumps(info["heldout"]))
    return info


def load_evaluator(backend: str, *, weights_dir=None, model_path=None, batch_size: int = 16):
    if backend == "xrv":
        return XrvEvaluator(weights_dir or "~/.torchxrayvision/models_data", batch_size=batch_size)
    if backend == "trained":
        if model_path is None:
            raise InputError("evaluation backend 'trained' needs the model file (--model, or rule evaluation_train)")
        return TrainedEvaluator(model_path, batch_size=batch_size)
    raise ValueError(f"evaluation.backend must be xrv or trained, got {backend!r}")
