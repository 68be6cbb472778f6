"""Evaluation stage on small real inputs: labels, the trained backend end to end, xrv with stand-in weights."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from instructx2x.evaluation import labels as L
from instructx2x.evaluation.evaluate import evaluate
from instructx2x.evaluation.evaluators import MissingWeights, XRV_FILES, check_xrv_weights, train_evaluator
from instructx2x.core.ledger import read_ledger

FINDINGS = list(L.FINDINGS)
RACE_TEXT = {"Asian": "ASIAN - CHINESE", "Black": "BLACK/AFRICAN AMERICAN", "White": "WHITE"}


def _image(path, seed, level, race_k, age):
    """A 32x32 grey 'radiograph' whose content depends on its labels (so a CNN can learn them)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(90, 10, (32, 32))
    img[8:24, 10:22] += 60 * level[1]  # cardiomegaly: bright centre
    img[24:, :] += 50 * level[3]  # effusion: bright bottom
    img[:, :4] += 40 * race_k  # race: left band
    img[:4, :] += (age - 20) * 1.5  # age: top band
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def build_dataset(root, n_pairs=36, seed=0):
    rng = np.random.default_rng(seed)
    img_dir = root / "img"
    img_dir.mkdir(parents=True)
    studies, patients, admissions, ins = [], [], [], []
    races = ["Asian", "Black", "White"]
    for i in range(n_pairs):
        sid = 10000000 + i
        cur, past = 50000000 + 2 * i, 50000000 + 2 * i + 1
        race = races[i % 3]
        age0 = 30 + (i * 7) % 50
        patients.append({"subject_id": sid, "gender": "F", "anchor_age": age0, "anchor_year": 2150, "anchor_year_group": "2014 - 2016", "dod": None})
        admissions.append({"subject_id": sid, "hadm_id": 20000000 + i, "admittime": pd.Timestamp("2150-01-01"), "race": RACE_TEXT[race]})
        for study, year in ((cur, 2152), (past, 2151)):
            lab = (rng.random(5) < 0.45).astype(float)
            row = {"subject_id": sid, "study_id": study, "StudyDate": year * 10000 + 101,
                   "study_datetime": pd.Timestamp(f"{year}-01-01"), "report_path": None}
            row.update(dict(zip(FINDINGS, lab)))
            studies.append(row)
            _image(img_dir / f"{study}.png", study, lab, races.index(race), age0 + year - 2150)
        split = "train" if i < 24 else ("val" if i < 30 else "test")
        ins.append({"pair_id": f"{cur}_{past}", "subject_id": sid, "split": split, "past_image": str(img_dir / f"{past}.png"),
                    "current_image": str(img_dir / f"{cur}.png"), "instruction": "x", "operations": "[]", "n_ops": 0})
    # a Hispanic subject and one with inconsistent races (excluded from race), one uncertain label
    admissions[0]["race"] = "HISPANIC/LATINO - CUBAN"
    admissions.append({"subject_id": 10000001, "hadm_id": 29999999, "admittime": pd.Timestamp("2151-01-01"), "race": "WHITE"})
    studies[2]["Edema"] = -1.0
    studies[4]["Edema"] = np.nan
    paths = {}
    for name, rows in (("studies", studies), ("patients", patients), ("admissions", admissions), ("instructions", ins)):
        paths[name] = root / f"{name}.parquet"
        pd.DataFrame(rows).to_parquet(paths[name])
    # inference records: every pair "edited" in both modes (edits = noisy copies of the input)
    recs = []
    for r in ins:
        for mode, noise in (("rse", 5), ("wo_rse", 25)):
            arr = np.asarray(Image.open(r["past_image"])).astype(float)
            arr += np.random.default_rng(len(recs)).normal(0, noise, arr.shape)
            out = img_dir / f"{r['pair_id']}_{mode}.png"
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out)
            recs.append({"pair_id": r["pair_id"], "subject_id": r["subject_id"], "split": r["split"], "mode": mode, "status": "ok",
                         "reason": "", "input_path": r["past_image"], "target_path": r["current_image"], "edited_path": str(out)})
    paths["records"] = root / "records.parquet"
    pd.DataFrame(recs).to_parquet(paths["records"])
    return paths


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("evaldata"))


def test_label_rules_race_and_age(dataset):
    studies = pd.read_parquet(dataset["studies"])
    v = pd.Series([1.0, 0.0, -1.0, np.nan])
    assert L.apply_label_rule(v, "zero", "zero").tolist() == [1.0, 0.0, 0.0, 0.0]
    assert L.apply_label_rule(v, "one", "zero").tolist() == [1.0, 0.0, 1.0, 0.0]
    got = L.apply_label_rule(v, "exclude", "exclude").tolist()
    assert got[:2] == [1.0, 0.0] and math.isnan(got[2]) and math.isnan(got[3])
    with pytest.raises(ValueError, match="uncertain"):
        L.apply_label_rule(v, "maybe")
    assert L.map_race("WHITE - RUSSIAN") == "White" and L.map_race("BLACK/CAPE VERDEAN") == "Black"
    assert L.map_race("SOUTH AMERICAN") is None and L.map_race(None) is None
    adm = pd.read_parquet(dataset["admissions"])
    races = L.subject_race(adm).set_index("subject_id")
    assert pd.isna(races.loc[10000000, "race"])  # Hispanic
    assert pd.isna(races.loc[10000001, "race"]) and "inconsistent" in races.loc[10000001, "race_reason"]
    assert L.subject_race(adm, "first").set_index("subject_id").loc[10000001, "race"] == "Black"
    assert L.age_at_study(21520101, 40, 2150) == 42


def test_trained_backend_end_to_end_deterministic(dataset, tmp_path):
    model, info = tmp_path / "ev.pt", tmp_path / "ev.json"
    kw = dict(seed=3, epochs=4)
    train_evaluator(dataset["instructions"], dataset["studies"], dataset["patients"], dataset["admissions"], model, info, **kw)
    info_d = json.loads(info.read_text())
    assert info_d["n_train_images"] == 48 and info_d["n_heldout_images"] == 12 and info_d["heldout_source"] == "val split"
    assert set(info_d["heldout"]) >= {"patho_auroc", "race_accuracy", "race_auroc", "age_mae_years", "age_pearson"}

    def run(tag):
        out = tmp_path / tag
        evaluate(dataset["records"], dataset["studies"], dataset["patients"], dataset["admissions"], out_metrics=out / "metrics.json",
                 out_predictions=out / "pred.parquet", ledger_path=out / "ledger.tsv", counts_path=out / "counts.tsv",
                 backend="trained", model_path=model, evaluator_info_path=info, n_boot=10, seed=5)
        return out

    a = run("a")
    m = json.loads((a / "metrics.json").read_text())
    assert set(m["rows"]) == {"real", "input", "wo_rse", "rse"}
    for row in m["rows"].values():
        assert set(row) >= {"patho_auroc", "race_auroc", "age_pearson", "cmig", "kl", "fid", "intervals", "patho_auroc_per_finding"}
        assert set(row["patho_auroc_per_finding"]) == set(FINDINGS)
    assert m["rows"]["real"]["kl"] == pytest.approx(0.0, abs=1e-9) and m["rows"]["real"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert m["rows"]["wo_rse"]["fid"] > 0
    assert m["n_pairs"] == 36 and m["n_with_race"] == 34
    assert [d["check"] for d in m["ablation_directions"]][2] == "KL: rse < wo_rse"
    assert m["evaluator"]["backend"] == "trained" and m["paper_table2"]["rows"]["rse"]["cmig"] == 89.35
    ledger = read_ledger(a / "ledger.tsv")
    assert {r["item_id"] for r in ledger if r["reason"] == "race excluded"} == {"50000000_50000001", "50000002_50000003"}
    b = run("b")
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "pred.parquet").read_bytes() == (b / "pred.parquet").read_bytes()


def test_bad_records_fail_and_unreadable_image_is_set_aside(dataset, tmp_path):
    recs = pd.read_parquet(dataset["records"])
    bad = tmp_path / "bad.parquet"
    recs.drop(columns="edited_path").to_parquet(bad)
    common = dict(out_metrics=tmp_path / "m.json", out_predictions=tmp_path / "p.parquet", ledger_path=tmp_path / "l.tsv",
                  counts_path=tmp_path / "c.tsv", backend="trained", n_boot=5)
    with pytest.raises(ValueError, match=r"bad.parquet.*edited_path"):
        evaluate(bad, dataset["studies"], dataset["patients"], dataset["admissions"], **common)
    # a truncated edit: the pair is set aside, the run goes on (xrv backend absent -> use trained model)
    model, info = tmp_path / "ev.pt", tmp_path / "ev.json"
    train_evaluator(dataset["instructions"], dataset["studies"], dataset["patients"], dataset["admissions"], model, info, epochs=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    recs.loc[0, "edited_path"] = str(broken)
    recs.loc[3, "status"] = "failed"
    ok = tmp_path / "recs.parquet"
    recs.to_parquet(ok)
    m = evaluate(ok, dataset["studies"], dataset["patients"], dataset["admissions"], model_path=model, **common)
    assert m["n_pairs"] == 34
    reasons = {r["reason"] for r in read_ledger(tmp_path / "l.tsv")}
    assert {"unreadable image", "not edited in every mode", "edit rse not ok"} <= reasons or {"unreadable image", "not edited in every mode"} <= reasons


def test_xrv_missing_weights_names_file_and_url(tmp_path):
    (tmp_path / XRV_FILES["age"]).write_bytes(b"")
    with pytest.raises(MissingWeights) as e:
        check_xrv_weights(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / XRV_FILES["densenet"]) in msg and str(tmp_path / XRV_FILES["race"]) in msg
    assert "https://github.com/mlmed/torchxrayvision/releases/download/v1/" + XRV_FILES["race"] in msg
    assert str(tmp_path / XRV_FILES["age"]) not in msg


def make_xrv_standins(d):
    """Stand-in weight files in the exact formats of data-contract §7.4."""
    import torchvision
    import torchxrayvision as xrv
    from torch import nn

    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(xrv.models.DenseNet(num_classes=18), d / XRV_FILES["densenet"])
    m = torchvision.models.resnet34()
    m.fc = nn.Sequential(nn.Linear(512, 3), nn.LogSoftmax(dim=1))
    torch.save(nn.DataParallel(m).state_dict(), d / XRV_FILES["race"])

    class Age(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x):
            return self.lin(x.mean(dim=(2, 3)))

    torch.jit.save(torch.jit.script(Age()), str(d / XRV_FILES["age"]))


@pytest.mark.slow
def test_xrv_backend_with_standin_weights(dataset, tmp_path, monkeypatch):
    from instructx2x.evaluation.evaluators import XrvEvaluator

    make_xrv_standins(tmp_path / "w")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ev = XrvEvaluator(tmp_path / "w", batch_size=4)
    assert not (home / ".torchxrayvision").exists()  # nothing written to (or read from) the real cache
    import os
    assert os.environ["HOME"] == str(home)
    ins = pd.read_parquet(dataset["instructions"])
    out = ev.predict(ins["current_image"].iloc[:3])
    assert out["patho"].shape == (3, 5) and out["race"].shape == (3, 3) and out["age"].shape == (3,)
    assert out["features"].shape == (3, 1024)
    assert np.allclose(out["race"].sum(1), 1.0, atol=1e-5)


def test_cli_evaluate_trained(dataset, tmp_path, capsys):
    from instructx2x.cli import main

    model, info = tmp_path / "ev.pt", tmp_path / "ev.json"
    train_evaluator(dataset["instructions"], dataset["studies"], dataset["patients"], dataset["admissions"], model, info, epochs=1)
    tables = dataset["studies"].parent
    assert main(["evaluate", "--records", str(dataset["records"]), "--tables", str(tables), "--out", str(tmp_path / "o"),
                 "--backend", "trained", "--model", str(model), "--splits", "test", "--bootstrap", "5"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["n_pairs"] == 6 and m["splits"] == ["test"]
    assert "rse" in capsys.readouterr().out
