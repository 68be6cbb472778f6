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
                        seed: int = 0, level: float = 0.95, samples_out: dict | None = None) -> dict:
    """Percentile CIs of every scalar (and per-finding AUROC) over pairs resampled with replacement.

    The resamples depend only on ``seed`` and the number of pairs, so rows scored with the same
    seed share them: their differences are paired (``ablation_directions``). ``samples_out``, when
    given, receives the per-resample values of every scalar."""
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
    if samples_out is not None:
        samples_out.update({k: np.asarray(v, dtype="float64") for k, v in samples.items()})
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


def interval_reasons(targets: dict, intervals: dict, findings, row: str) -> dict:
    """Why each missing interval (None) could not be computed: ``{metric: reason}``."""
    n = len(targets["age"])
    labels = np.asarray(targets["labels"], dtype="float64")
    race = np.asarray(targets["race_idx"])
    age = np.asarray(targets["age"], dtype="float64")
    groups = {int(g): int((race == g).sum()) for g in np.unique(race[race >= 0])}
    reasons = {}
    one_class = [f for i, f in enumerate(findings) if len(np.unique(labels[:, i][np.isfinite(labels[:, i])])) < 2]

    def why(key):
        if n < 2:
            return f"{n} pair(s): nothing to resample"
        if key.startswith("patho_auroc/"):
            f = key.split("/", 1)[1]
            i = list(findings).index(f)
            col = labels[:, i][np.isfinite(labels[:, i])]
            return (f"{f}: {int(col.sum())} positive and {int(len(col) - col.sum())} negative pairs; AUROC undefined in "
                    "more than half of the resamples (one class only)")
        if key == "patho_auroc":
            return "no finding has both classes in at least half of the resamples"
        if key == "race_auroc":
            return (f"race groups among the {int((race >= 0).sum())} pairs with a race label: {groups}; all 3 groups "
                    "are needed and were absent in more than half of the resamples")
        if key == "age_pearson":
            return f"{int(np.isfinite(age).sum())} pairs with an age: too few or constant ages in the resamples"
        if key == "cmig":
            extra = f"; findings with one class: {one_class}" if one_class else ""
            return ("Eq. 3 needs every per-finding AUROC, race AUROC and age r finite and > 0; one of them was "
                    f"undefined or <= 0 in more than half of the resamples{extra}")
        if key in ("kl", "fid"):
            return f"{row}: fewer than 2 pairs in the resamples"
        return "undefined in more than half of the resamples"

    for key, ci in intervals.items():
        if ci is None:
            reasons[key] = why(key)
    return reasons


DIRECTIONS = (
    # name, left row, right row, metric, holds when (left - right) ...
    ("race AUROC: rse >= wo_rse", "rse", "wo_rse", "race_auroc", ">="),
    ("age Pearson r: rse >= wo_rse", "rse", "wo_rse", "age_pearson", ">="),
    ("KL: rse < wo_rse", "rse", "wo_rse", "kl", "<"),
    ("patho AUROC: input < rse", "input", "rse", "patho_auroc", "<"),
    ("patho AUROC: input < wo_rse", "input", "wo_rse", "patho_auroc", "<"),
)


def ablation_directions(rows: dict, samples: dict | None = None, level: float = 0.95) -> list[dict]:
    """The paper's ablation directions, measured: point estimates and a paired bootstrap interval.

    RSE at least as good as wo-RSE on race and age preservation, lower KL than wo-RSE, and the unedited
    floor below both edited rows on pathology AUROC. ``holds`` (on the point estimates) is None where a
    value is missing. ``samples`` ({row: {metric: per-resample values}}, the same resamples for every
    row) gives ``difference_interval``, the interval of left - right; ``supported`` says whether that
    interval lies entirely on the direction's side (a direction can hold on the point estimates and
    still not be supported)."""
    def get(row, key):
        r = rows.get(row) or {}
        return r.get(key)

    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = []
    for name, left, right, key, rel in DIRECTIONS:
        a, b = get(left, key), get(right, key)
        ok = None
        if a is not None and b is not None and np.isfinite(a) and np.isfinite(b):
            ok = bool(a >= b) if rel == ">=" else bool(a < b)
        ci, supported = None, None
        if samples and left in samples and right in samples and key in samples[left] and key in samples[right]:
            d = samples[left][key] - samples[right][key]
            d = d[np.isfinite(d)]
            if len(d) >= max(2, len(samples[left][key]) // 2):
                ci = [float(np.percentile(d, lo)), float(np.percentile(d, hi))]
                supported = bool(ci[0] >= 0) if rel == ">=" else bool(ci[1] < 0)
        out.append({"check": name, "left": None if a is None else float(a), "right": None if b is None else float(b),
                    "difference": None if ok is None else float(a - b), "difference_interval": ci,
                    "holds": ok, "supported": supported})
    return out
