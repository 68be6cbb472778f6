"""Table 2 metrics against hand computations."""
import math

import numpy as np
import pytest

from instructx2x.evaluation import metrics as M


def test_auroc_perfect_and_nan_labels_ignored():
    assert M.auroc([0, 0, 1, 1, np.nan], [0.1, 0.2, 0.8, 0.9, 0.0]) == 1.0
    assert M.auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert math.isnan(M.auroc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_race_auroc_ovr_macro_and_exclusions():
    r = np.array([0, 1, 2, 0, 1, 2, -1])
    p = np.eye(3)[[0, 1, 2, 0, 1, 2, 0]] * 0.9 + 0.05
    p[-1] = [0.0, 0.0, 1.0]  # excluded row: would hurt if counted
    assert M.race_auroc(r, p) == pytest.approx(1.0)
    assert math.isnan(M.race_auroc(np.array([0, 1, 0]), np.full((3, 3), 1 / 3)))


def test_cmig_eq3():
    a = [0.8, 0.9, 0.7, 0.85, 0.75]
    f = [0.95, 0.8]
    expected = math.sqrt(np.prod(a) ** (1 / 5) * np.prod(f) ** (1 / 2))
    assert M.cmig(a, f) == pytest.approx(expected)
    # the paper's real row: Eq. 3 on (84.66 ; 99.56, 88.83) gives 89.2, not the printed 90.99
    assert M.cmig([0.8466], [0.9956, 0.8883]) == pytest.approx(0.892, abs=5e-4)
    assert math.isnan(M.cmig(a, [0.9, -0.1]))
    assert math.isnan(M.cmig(a, [0.9, float("nan")]))


def test_kl_in_nats():
    real = np.array([[0.5, 0.5], [0.5, 0.5]])
    gen = np.array([[0.25, 0.75], [0.25, 0.75]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert M.kl_divergence(real, gen) == pytest.approx(expected, rel=1e-6)
    assert M.kl_divergence(real, real) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2 + 1.0
    # mu diff^2 = 3; traces 3 + 12 - 2*tr(sqrt(4 I)) = 15 - 12 = 3 -> 6
    assert M.frechet_distance(a, b) == pytest.approx(6.0, rel=0.1)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_age_pearson_and_bootstrap_intervals_contain_estimate():
    rng = np.random.default_rng(1)
    n = 60
    age = rng.uniform(20, 90, n)
    labels = (rng.random((n, 5)) < 0.4).astype(float)
    race = np.arange(n) % 3
    preds = {"patho": np.clip(labels * 0.6 + rng.random((n, 5)) * 0.4, 0, 1), "race": np.eye(3)[race] * 0.7 + 0.1,
             "age": age + rng.normal(0, 10, n), "features": rng.normal(size=(n, 4))}
    real = {"patho": labels * 0.9 + 0.05, "race": np.eye(3)[race], "age": age, "features": rng.normal(size=(n, 4))}
    targets = {"labels": labels, "race_idx": race, "age": age}
    m = M.row_metrics(targets, preds, real, [f"f{i}" for i in range(5)])
    assert m["age_pearson"] == pytest.approx(np.corrcoef(age, preds["age"])[0, 1])
    ci = M.bootstrap_intervals(targets, preds, real, [f"f{i}" for i in range(5)], n_boot=50, seed=3)
    for k in ("patho_auroc", "age_pearson", "cmig", "kl", "fid"):
        lo, hi = ci[k]
        assert lo <= hi
    assert ci["age_pearson"][0] <= m["age_pearson"] <= ci["age_pearson"][1]
    again = M.bootstrap_intervals(targets, preds, real, [f"f{i}" for i in range(5)], n_boot=50, seed=3)
    assert again == ci


def test_ablation_directions():
    rows = {"real": {}, "input": {"patho_auroc": 0.6}, "wo_rse": {"race_auroc": 0.9, "age_pearson": 0.5, "kl": 0.2, "patho_auroc": 0.7},
            "rse": {"race_auroc": 0.95, "age_pearson": 0.4, "kl": 0.1, "patho_auroc": 0.55}}
    got = {d["check"]: d["holds"] for d in M.ablation_directions(rows)}
    assert got == {"race AUROC: rse >= wo_rse": True, "age Pearson r: rse >= wo_rse": False, "KL: rse < wo_rse": True,
                   "patho AUROC: input < rse": False, "patho AUROC: input < wo_rse": True}
    rows["rse"]["race_auroc"] = None
    assert M.ablation_directions(rows)[0]["holds"] is None
