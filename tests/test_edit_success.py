"""Edit-success measures, interval reasons and measured ablation directions (issue 15)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from instructx2x.evaluation import edit_success as ES
from instructx2x.evaluation import metrics as M


def test_distance_ratio_inside_region_and_whole_image():
    target = np.zeros((8, 8))
    inp = np.full((8, 8), 10.0)
    edit = inp.copy()
    edit[:4] = 2.0  # closer in the top half only
    region = np.zeros((8, 8), bool)
    region[:4] = True
    assert ES.distance_ratio(edit, inp, target, region)["ratio"] == pytest.approx(0.2)
    assert ES.distance_ratio(edit, inp, target)["ratio"] == pytest.approx(0.6)
    assert np.isnan(ES.distance_ratio(edit, inp, target, np.zeros((8, 8), bool))["ratio"])
    with pytest.raises(ValueError, match="shape"):
        ES.distance_ratio(edit[:4], inp, target)


def _records(tmp_path):
    from PIL import Image

    rows = []
    for i, (e_rse, e_wo) in enumerate([(5, 5), (20, 5), (5, 30)]):
        paths = {}
        for name, v in (("in", 10), ("tg", 0), ("rse", e_rse), ("wo", e_wo), ("mask", 255)):
            p = tmp_path / f"{name}{i}.png"
            Image.fromarray(np.full((16, 16), v, np.uint8)).save(p)
            paths[name] = str(p)
        ops = json.dumps([{"op": "add", "finding": "pleural effusion"}, {"op": "remove", "finding": "edema"},
                          {"op": "change", "finding": "edema"}, {"op": "add", "finding": "pneumonia"}])
        for mode, ed in (("rse", paths["rse"]), ("wo_rse", paths["wo"])):
            rows.append({"pair_id": f"p{i}", "mode": mode, "status": "ok", "input_path": paths["in"],
                         "target_path": paths["tg"], "edited_path": ed, "mask_path": paths["mask"], "operations": ops})
    return pd.DataFrame(rows)


def test_pair_distances_directions_and_summary(tmp_path):
    from instructx2x.core.images import read_gray

    rec = _records(tmp_path)
    dist = ES.pair_distances(rec, lambda p: read_gray(p, check_content=False))
    rse = dist[dist["mode"] == "rse"].set_index("pair_id")["ratio"]
    assert rse.to_dict() == pytest.approx({"p0": 0.5, "p1": 2.0, "p2": 0.5})
    preds = []
    for i in range(3):
        for row, eff, ede in (("input", 0.5, 0.5), ("rse", 0.7, 0.4), ("wo_rse", 0.4, 0.6)):
            preds.append({"pair_id": f"p{i}", "row": row, "p_Pleural Effusion": eff, "p_Edema": ede})
    dirs = ES.operation_directions(rec, pd.DataFrame(preds))
    assert len(dirs) == 12  # add effusion + remove edema, per pair and mode (change and pneumonia not scored)
    assert dirs[dirs["mode"] == "rse"]["moved_as_instructed"].all()
    assert not dirs[dirs["mode"] == "wo_rse"]["moved_as_instructed"].any()
    s = ES.summarize(dist, dirs, n_boot=50, seed=0)
    assert s["rse"]["median_ratio"] == pytest.approx(0.5) and s["rse"]["share_closer"] == pytest.approx(2 / 3)
    assert s["wo_rse"]["share_closer"] == pytest.approx(2 / 3)
    assert s["rse"]["share_moved_as_instructed"] == 1.0 and s["wo_rse"]["share_moved_as_instructed"] == 0.0
    lo, hi = s["rse"]["median_ratio_interval"]
    assert 0.5 <= lo <= hi <= 2.0


def test_interval_reasons_name_the_missing_race_group():
    n = 12
    targets = {"labels": np.tile([[1.0], [0.0]], (n // 2, 1)), "race_idx": np.array([0, 2] * (n // 2)),
               "age": np.linspace(30, 80, n)}
    rng = np.random.default_rng(0)
    preds = {"patho": rng.random((n, 1)), "race": rng.random((n, 3)), "age": rng.random(n) * 50,
             "features": rng.random((n, 4))}
    ci = M.bootstrap_intervals(targets, preds, preds, ["Edema"], n_boot=20, seed=0)
    assert ci["race_auroc"] is None and ci["patho_auroc"] is not None
    reasons = M.interval_reasons(targets, ci, ["Edema"], "rse")
    assert "race_auroc" in reasons and "all 3 groups" in reasons["race_auroc"] and "patho_auroc" not in reasons


def test_ablation_directions_report_paired_intervals_including_failures():
    rows = {"rse": {"race_auroc": 0.9, "age_pearson": 0.5, "kl": 0.1}, "wo_rse": {"race_auroc": 0.8, "age_pearson": 0.6,
                                                                                 "kl": 0.2},
            "input": {"patho_auroc": 0.6}}
    rows["rse"]["patho_auroc"] = 0.5
    rows["wo_rse"]["patho_auroc"] = 0.7
    samples = {r: {k: np.full(20, v) + np.linspace(-0.01, 0.01, 20) for k, v in d.items()} for r, d in rows.items()}
    out = {d["check"]: d for d in M.ablation_directions(rows, samples)}
    assert out["race AUROC: rse >= wo_rse"]["holds"] and out["race AUROC: rse >= wo_rse"]["supported"]
    assert out["age Pearson r: rse >= wo_rse"]["holds"] is False and out["age Pearson r: rse >= wo_rse"]["supported"] is False
    assert out["patho AUROC: input < rse"]["holds"] is False
    assert out["KL: rse < wo_rse"]["difference_interval"] == pytest.approx([-0.1, -0.1], abs=1e-9)
