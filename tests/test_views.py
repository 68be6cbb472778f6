"""View scores (xrv with a stand-in weight file of the exact format, and the trained tiny CNN)
and the PA decision, on small images made here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from instructx2x.views import classifier as view_classifier
from instructx2x.core.ledger import read_ledger
from instructx2x.views import XRV_VIEW_FILE, XRV_VIEW_URL, MissingWeights, decide_pa, load_xrv_view_model, score_views


def frontal(seed: int, n: int = 96) -> np.ndarray:
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.full((n, n), 20.0)
    img[((x - 0.5) / 0.45) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1] = 160
    for cx in (0.3 + r.uniform(-0.03, 0.03), 0.7 + r.uniform(-0.03, 0.03)):
        img[((x - cx) / 0.14) ** 2 + ((y - 0.45) / 0.28) ** 2 < 1] = 60
    return np.clip(img + r.normal(0, 6, (n, n)), 0, 255).astype(np.uint8)


def lateral(seed: int, n: int = 96) -> np.ndarray:
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.full((n, n), 20.0)
    img[((x - 0.5 - r.uniform(-0.05, 0.05)) / 0.25) ** 2 + ((y - 0.5) / 0.48) ** 2 < 1] = 140
    img[((x - 0.45) / 0.15) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1] = 90
    img[(x > 0.68) & (x < 0.74) & (y > 0.1)] = 210  # spine seen from the side
    return np.clip(img + r.normal(0, 6, (n, n)), 0, 255).astype(np.uint8)


def make_images(tmp_path, n_each: int = 30) -> pd.DataFrame:
    """Frontal and lateral images with metadata; two wrong metadata rows and one truncated JPG."""
    d = tmp_path / "files"
    d.mkdir()
    rows = []
    for i in range(2 * n_each):
        is_lat = i % 2 == 1
        arr = lateral(i) if is_lat else frontal(i)
        view = "LATERAL" if is_lat else ("PA" if i % 4 == 0 else "AP")
        p = d / f"img{i:03d}.jpg"
        Image.fromarray(arr).save(p, quality=95)
        rows.append({"dicom_id": f"d{i:03d}", "subject_id": 1000 + i // 4, "study_id": 100 + i // 2, "ViewPosition": view,
                     "image_path": str(p), "truth": "lateral" if is_lat else "frontal"})
    rows[1]["ViewPosition"] = "PA"  # a lateral image whose metadata says PA
    data = open(rows[4]["image_path"], "rb").read()
    open(rows[4]["image_path"], "wb").write(data[: len(data) // 3])  # truncated JPG, metadata PA
    df = pd.DataFrame(rows)
    df.drop(columns=["truth"]).to_parquet(tmp_path / "images.parquet")
    return df


def test_xrv_backend_matches_torchxrayvision_viewmodel(tmp_path, monkeypatch):
    import torchvision
    import torchxrayvision as xrv

    images = make_images(tmp_path, n_each=3)
    weights = tmp_path / "weights"
    weights.mkdir()
    with pytest.raises(MissingWeights) as err:
        load_xrv_view_model(weights)
    assert XRV_VIEW_FILE in str(err.value) and XRV_VIEW_URL in str(err.value)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), weights / XRV_VIEW_FILE)  # data-contract §7.4
    scores = score_views(tmp_path / "images.parquet", tmp_path / "scores.parquet", "xrv", weights_dir=weights)
    assert list(scores.columns) == ["dicom_id", "backend", "p_lateral", "p_frontal", "error"]
    ok = scores["error"] == ""
    assert ok.sum() == len(images) - 1 and scores.loc[~ok, "p_lateral"].isna().all()
    assert np.allclose(scores.loc[ok, "p_lateral"] + scores.loc[ok, "p_frontal"], 1.0)
    # the same numbers as torchxrayvision's own ViewModel reading the same file from its cache
    cache = tmp_path / "home" / ".torchxrayvision" / "models_data"
    cache.mkdir(parents=True)
    (cache / XRV_VIEW_FILE).symlink_to(weights / XRV_VIEW_FILE)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ref = xrv.baseline_models.xinario.ViewModel()
    img = np.asarray(Image.open(images.loc[0, "image_path"]).convert("L").resize((224, 224), Image.BILINEAR)).astype(np.float32)
    with torch.no_grad():
        p_ref = torch.softmax(ref(torch.from_numpy(xrv.datasets.normalize(img, 255))[None, None]), 1)[0, 1].item()
    assert scores.loc[0, "p_lateral"] == pytest.approx(p_ref, abs=1e-5)


def test_trained_backend_and_pa_decision(tmp_path):
    images = make_images(tmp_path)
    model = tmp_path / "view_model.pt"
    info = view_classifier.train(tmp_path / "images.parquet", model, seed=3, epochs=25)
    assert info["skipped_unreadable"] == 1
    scores = score_views(tmp_path / "images.parquet", tmp_path / "scores.parquet", "trained", model_path=model)
    again = score_views(tmp_path / "images.parquet", tmp_path / "scores2.parquet", "trained", model_path=model)
    assert scores.equals(again)
    pa = decide_pa(tmp_path / "images.parquet", tmp_path / "scores.parquet", tmp_path / "pa.parquet",
                   ledger_path=tmp_path / "views.tsv", counts_path=tmp_path / "views.counts.tsv")
    truth = images.set_index("dicom_id")
    true_pa = (truth["ViewPosition"] == "PA") & (truth["truth"] == "frontal")
    true_pa[images.loc[4, "dicom_id"]] = False  # unreadable
    got = pa.set_index("dicom_id")["is_pa"]
    assert got.equals(true_pa.reindex(got.index))
    reasons = pa.set_index("dicom_id")["reason"]
    assert reasons["d001"] == "classifier says lateral"
    assert reasons["d004"] == "unreadable image"
    assert reasons["d002"] == "metadata not PA"
    counts = read_ledger(tmp_path / "views.counts.tsv")
    assert int(counts[-1]["rows_out"]) == int(got.sum())
    for a, b in zip(counts, counts[1:]):
        assert a["rows_out"] == b["rows_in"]
    assert {r["reason"] for r in read_ledger(tmp_path / "views.tsv")} == {"classifier says lateral", "unreadable image"}


def test_bad_images_table_fails_naming_file_and_column(tmp_path):
    pd.DataFrame({"dicom_id": ["a"], "study_id": [1]}).to_parquet(tmp_path / "images.parquet")
    with pytest.raises(ValueError, match=r"images.parquet.*ViewPosition"):
        score_views(tmp_path / "images.parquet", tmp_path / "s.parquet", "trained", model_path=tmp_path / "m.pt")
