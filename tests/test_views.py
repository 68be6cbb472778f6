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


def test_cross_fitted_model_never_scores_its_own_patients(tmp_path):
    """A patient's scores come from the model of its fold, trained without it: flipping that patient's own
    view labels in the metadata changes the other folds' models but not its scores."""
    make_images(tmp_path)
    images = pd.read_parquet(tmp_path / "images.parquet")
    patient = 1003  # images d012-d015: two frontal, two lateral
    kw = dict(seed=3, epochs=5, folds=3)
    view_classifier.train(tmp_path / "images.parquet", tmp_path / "m1.pt", **kw)
    s1 = score_views(tmp_path / "images.parquet", tmp_path / "s1.parquet", "trained", model_path=tmp_path / "m1.pt")
    flipped = images.copy()
    mine = flipped["subject_id"] == patient
    flipped.loc[mine, "ViewPosition"] = flipped.loc[mine, "ViewPosition"].map({"LATERAL": "PA", "PA": "LATERAL", "AP": "LATERAL"})
    flipped.to_parquet(tmp_path / "flipped.parquet")
    view_classifier.train(tmp_path / "flipped.parquet", tmp_path / "m2.pt", **kw)
    s2 = score_views(tmp_path / "flipped.parquet", tmp_path / "s2.parquet", "trained", model_path=tmp_path / "m2.pt")
    ids = images.loc[mine, "dicom_id"]
    a, b = s1.set_index("dicom_id")["p_lateral"], s2.set_index("dicom_id")["p_lateral"]
    assert a[ids].equals(b[ids])  # its own fold's model is the same model
    others = images.loc[~mine & (images["subject_id"].map(lambda s: view_classifier.fold_of(s, 3))
                                 != view_classifier.fold_of(patient, 3)), "dicom_id"]
    assert not a[others].equals(b[others])  # the other folds' models did learn the flipped labels


def test_trained_backend_without_lateral_images_says_to_use_xrv(tmp_path):
    make_images(tmp_path)
    images = pd.read_parquet(tmp_path / "images.parquet")
    images[images["ViewPosition"] == "PA"].to_parquet(tmp_path / "pa_only.parquet")  # what source: physionet downloads
    from instructx2x.core.errors import InputError

    with pytest.raises(InputError, match=r"0 lateral.*views.backend: xrv"):
        view_classifier.train(tmp_path / "pa_only.parquet", tmp_path / "m.pt", epochs=1)


def test_real_data_default_backend_is_xrv_and_the_demo_keeps_trained():
    import yaml

    from instructx2x.core.config import REPO_ROOT, validate_config

    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    assert config["views"]["backend"] == "trained"
    config["views"] = {}
    assert validate_config(config)["views"]["backend"] == "xrv"


@pytest.mark.slow
def test_physionet_source_on_a_loopback_mirror_runs_past_views_with_real_data_settings(tmp_path):
    """README "Using the real data": source physionet, views.backend xrv with weights in views.xrv_weights_dir,
    registration at the schema's defaults; the demo's raw data served as PhysioNet on loopback. Stage 2
    downloads PA images only, which the trained backend could not learn from; xrv needs none."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torchvision
    import yaml

    from instructx2x.core.config import REPO_ROOT
    from helpers.physionet_mirror import PhysioNetMirror
    from instructx2x.synthetic.generate import generate_dataset

    generate_dataset(tmp_path / "demo", patients=8, seed=7)
    weights = tmp_path / "xrv"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), weights / XRV_VIEW_FILE)  # the file's exact format
    work = tmp_path / "work"
    work.mkdir()
    user, password = "reader", "loopback-pw-7"
    with PhysioNetMirror(tmp_path / "demo/physionet.org", user, password) as m:
        config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
        config.update(source="physionet", results_dir="results")
        config["physionet"] = {"base_url": m.base_url, "workers": 2, "backoff_s": 0.01}
        config["views"] = {"backend": "xrv", "xrv_weights_dir": str(weights)}  # the real-data settings
        config["registration"] = {}
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
        env.update(PHYSIONET_USERNAME=user, PHYSIONET_PASSWORD=password, HOME=str(tmp_path))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        cmd = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO_ROOT / "Snakefile"),
               "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1",
               "results/views/pa_images.parquet", "results/pairs/pairs.parquet"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "views_train" not in proc.stderr  # the xrv backend trains nothing
    images = pd.read_parquet(work / "results/tables/images.parquet")
    on_disk = images[images["image_path"].map(lambda p: Path(p).is_file())]
    assert set(on_disk["ViewPosition"]) == {"PA"}  # what was downloaded
    scores = pd.read_parquet(work / "results/views/view_scores.parquet")
    assert (scores["backend"] == "xrv").all() and scores.set_index("dicom_id").loc[on_disk["dicom_id"], "p_lateral"].notna().all()
    pa = pd.read_parquet(work / "results/views/pa_images.parquet")
    assert len(pa) == len(images) and pa["is_pa"].any()
    assert len(pd.read_parquet(work / "results/pairs/pairs.parquet")) > 0
