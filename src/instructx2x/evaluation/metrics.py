"""Table 2 metrics (method.md §10), library implementations wherever one exists.

- ``patho_auroc``: ``sklearn.metrics.roc_auc_score`` per finding, and their mean.
- ``race_auroc``: one-vs-rest macro AUROC over Asian / Black / White (``roc_auc_score``,
  ``multi_class="ovr", average="macro"``).
- ``age_pearson``: ``scipy.stats.pearsonr`` between predicted and true age.
- ``cmig`` (Eq. 3): sqrt( gmean(a_i) * gmean(f_j) ), a_i = the per-finding AUROCs, f_j =
  (race AUROC, age Pearson r); ``scipy.stats.gmean``. Undefined (NaN) when a component is
  missing or not positive.
- ``kl`` (Eq. 4): P, Q = mean predicted probability per finding over the real / generated images,
  each normalised to sum to 1 over the findings; D_KL(P||Q) = sum P log(P/Q) in **nats**
  (``scipy.stats.entropy``).
- ``fid``: Fréchet distance between Gaussians fitted to real and generated features
  (``scipy.linalg.sqrtm``).
- Bootstrap 95% CIs: pairs resampled with replacement (seeded), percentile intervals.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg, stats
from sklearn.metrics import roc_auc_score

PAPER_TABLE2 = {
    "note": ("Paper's Table 2 (InstructX2X), values in %, reproduced for reference only. Caution (method.md §10): "
             "its CMIG column cannot be recomputed from its Patho/Race/Age columns with Eq. 3 "
             "(for real images Eq. 3 gives 89.2, not 90.99); the unit of its KL column is not stated."),
    "rows": {
        "real": {"patho_auroc": 84.66, "race_auroc": 99.56, "age_pearson": 88.83, "cmig": 90.99, "kl": None, "fid": None},
        "wo_rse": {"patho_auroc": 83.54, "race_auroc": 96.15, "age_pearson": 82.04, "cmig": 88.87, "kl": 14.99, "fid": 1.92},
        "rse": {"patho_auroc": 83.33, "race_auroc": 97.65, "age_pearson": 82.84, "cmig": 89.35, "kl": 7.88, "fid": 2.64},
    },
}


def _nan_to_none(x):
    return None if x is None or not np.isfinite(x) else float(x)


def auroc(y_true, score) -> float:
    """AUROC ignoring NaN labels; NaN when only one class is present."""
    y = np.asarray(y_true, dtype="float64")
    s = np.asarray(score, dtype="float64")
    ok = np.isfinite(y) & np.isfinite(s)
    y, s = y[ok], s[ok]
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y.astype(int), s))


def patho_aurocs(labels: np.ndarray, probs: np.ndarray, findings) -> dict:
    return {f: auroc(labels[:, i], probs[:, i]) for i, f in enumerate(findings)}


def race_auroc(race_idx, race_probs: np.ndarray) -> float:
    """One-vs-rest macro AUROC; ``race_idx`` is -1 where race is excluded. NaN unless all 3 groups are present."""
    r = np.asarray(race_idx)
    ok = r >= 0
    r, p = r[ok], np.asarray(race_probs, dtype="float64")[ok]
    k = p.shape[1]
    if len(np.unique(r)) < k:
        return float("nan")
    p = p / p.sum(axis=1, keepdims=True)
    return float(roc_auc_score(r, p, multi_class="ovr", average="macro", labels=list(range(k))))


def age_pearson(age_true, age_pred) -> float:
    t = np.asarray(age_true, dtype="float64")
    p = np.asarray(age_pred, dtype="float64")
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if len(t) < 3 or np.std(t) == 0 or np.std(p) == 0:
        return float("nan")
    return float(stats.pearsonr(t, p).statistic)


def cmig(a, f) -> float:
    """Eq. 3: sqrt( (prod a_i)^(1/n) * (prod f_j)^(1/m) ); NaN if any component is missing or <= 0."""
    a = np.asarray(a, dtype="float64")
    f = np.asarray(f, dtype="float64")
    if len(a) == 0 or len(f) == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(f))) or np.any(a <= 0) or np.any(f <= 0):
        return float("nan")
    return float(np.sqrt(stats.gmean(a) * stats.gmean(f)))


def kl_divergence(real_probs: np.ndarray, gen_probs: np.ndarray, eps: float = 1e-12) -> float:
    """Eq. 4 in nats: P, Q = class-wise mean probability over the set, normalised over classes."""
    P = np.asarray(real_probs, dtype="float64").mean(axis=0) + eps
    Q = np.asarray(gen_probs, dtype="float64").mean(axis=0) + eps
    return float(stats.entropy(P / P.sum(), Q / Q.sum()))


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b)) on feature rows (FID formula)."""
    a = np.asarray(feat_a, dtype="float64")
    b = np.asarray(feat_b, dtype="float64")
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # fewer samples than dimensions: singular, as with pytorch-fid
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.all(np.isfinite(covmean)):  # regularise as pytorch-fid does
            off = np.eye(len(s_a)) * 1e-6
            covmean = linalg.sqrtm((s_a + off) @ (s_b + off))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean), 0.0))


def row_metrics(targets: dict, preds: dict, real_preds: dict, findings) -> dict:
    """All Table 2 values for one row on the given index set.

    ``targets``: ``labels [N,F]`` (NaN excluded), ``race_idx [N]`` (-1 excluded), ``age [N]``.
    ``preds`` / ``real_preds``: ``patho [N,F]``, ``race [N,3]``, ``age [N]``, ``features [N,D]``.
    """
    per = patho_aurocs(targets["labels"], preds["patho"], findings)
    vals = np.array(list(per.values()))
    patho = float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else float("nan")
    race = race_auroc(targets["race_idx"], preds["race"])
    age = age_pearson(targets["age"], preds["age"])
    return {
        "patho_auroc": patho,
        "patho_auroc_per_finding": per,
        "race_auroc": race,
        "age_pearson": age,
        "cmig": cmig(vals, [race, age]),
        "kl": kl_divergence(real_preds["patho"], preds["patho"]),
        "fid": frechet_distance(real_preds["features"], preds["features"]),
    }


SCALARS = ("patho_auroc", "race_auroc", "age_pearson", "cmig", "kl", "fid")


def _take(d: dict, idx) -> dict:
    return {k: np.asarray(v)[idx] for k, v in d.items()}


def bootstrap_intervals(targets: dict, preds: dict, real_preds: dict, findings, *, n_boot: int = 200,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Percentile CIs of every scalar (and per-finding AUROC) over pairs resampled with replacement."""
    n = len(targets["age"])
    rng = np.random.default_rng(seed)
    samples: dict[str, list] = {k: [] for k in SCALARS}
    samples.update({f"patho_auroc/{f}": [] for f in findings})
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        m = row_metrics(_take(targets, idx), _take(preds, idx), _take(real_preds, idx), findings)
        for k in SCALARS:
            samples[k].append(m[k])
        for f in findings:
            samples[f"patho_auroc/{f}"].append(m["patho_auroc_per_finding"][f])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for k, v in samples.items():
        v = np.asarray(v, dtype="float64")
        v = v[np.isfinite(v)]
        out[k] = [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if len(v) >= max(2, n_boot // 2) else None
    return out


def clean(metrics: dict) -> dict:
    """NaN -> None for JSON."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out[k] = clean(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = _nan_to_none(float(v))
        else:
            out[k] = v
    return out


def ablation_directions(rows: dict) -> list[dict]:
    """The paper's ablation directions, checked on point estimates (intervals shown beside them in the report).

    RSE at least as good as wo-RSE on race and age preservation, lower KL than wo-RSE, and the unedited
    floor below both edited rows on pathology AUROC. ``holds`` is None where a value is missing.
    """
    def get(row, key):
        r = rows.get(row) or {}
        return r.get(key)

    checks = [
        ("race AUROC: rse >= wo_rse", get("rse", "race_auroc"), get("wo_rse", "race_auroc"), lambda a, b: a >= b),
        ("age Pearson r: rse >= wo_rse", get("rse", "age_pearson"), get("wo_rse", "age_pearson"), lambda a, b: a >= b),
        ("KL: rse < wo_rse", get("rse", "kl"), get("wo_rse", "kl"), lambda a, b: a < b),
        ("patho AUROC: input < rse", get("input", "patho_auroc"), get("rse", "patho_auroc"), lambda a, b: a < b),
        ("patho AUROC: input < wo_rse", get("input", "patho_auroc"), get("wo_rse", "patho_auroc"), lambda a, b: a < b),
    ]
    out = []
    for name, a, b, cmp in checks:
        ok = None if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)) else bool(cmp(a, b))
        out.append({"check": name, "left": None if a is None else float(a), "right": None if b is None else float(b), "holds": ok})
    return out
