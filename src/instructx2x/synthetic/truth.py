"""The ground-truth model: patients (identity traits), studies (dates, type, findings), images
(true view, acquisition transform, exposure) and planted defects.

Everything here is drawn from one ``numpy.random.Generator`` in a fixed order, so the same seed
gives the same truth. Other modules only *render* this truth (images, reports, labels, VQA rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import ids

# 33-value MIMIC-IV v2.0-3.1 race vocabulary (data-contract §4.3) with rough weights.
RACES = [
    ("AMERICAN INDIAN/ALASKA NATIVE", 0.3), ("ASIAN", 1.5), ("ASIAN - ASIAN INDIAN", 0.3),
    ("ASIAN - CHINESE", 0.8), ("ASIAN - KOREAN", 0.1), ("ASIAN - SOUTH EAST ASIAN", 0.3),
    ("BLACK/AFRICAN", 0.3), ("BLACK/AFRICAN AMERICAN", 12.0), ("BLACK/CAPE VERDEAN", 0.7),
    ("BLACK/CARIBBEAN ISLAND", 0.5), ("HISPANIC OR LATINO", 1.0),
    ("HISPANIC/LATINO - CENTRAL AMERICAN", 0.2), ("HISPANIC/LATINO - COLUMBIAN", 0.2),
    ("HISPANIC/LATINO - CUBAN", 0.2), ("HISPANIC/LATINO - DOMINICAN", 0.8),
    ("HISPANIC/LATINO - GUATEMALAN", 0.3), ("HISPANIC/LATINO - HONDURAN", 0.1),
    ("HISPANIC/LATINO - MEXICAN", 0.2), ("HISPANIC/LATINO - PUERTO RICAN", 1.5),
    ("HISPANIC/LATINO - SALVADORAN", 0.3), ("MULTIPLE RACE/ETHNICITY", 0.2),
    ("NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", 0.1), ("OTHER", 3.0),
    ("PATIENT DECLINED TO ANSWER", 0.5), ("PORTUGUESE", 0.4), ("SOUTH AMERICAN", 0.2),
    ("UNABLE TO OBTAIN", 0.8), ("UNKNOWN", 4.0), ("WHITE", 60.0), ("WHITE - BRAZILIAN", 0.3),
    ("WHITE - EASTERN EUROPEAN", 0.4), ("WHITE - OTHER EUROPEAN", 1.5), ("WHITE - RUSSIAN", 1.2),
]
RACE_NAMES = [r for r, _ in RACES]
RACE_GROUPS = ("white", "black", "asian", "hispanic", "other")


def race_group(race: str) -> str:
    """The coarse group rendered as an image trait (the usual grouping of data-contract §4.4)."""
    if race.startswith("WHITE") or race == "PORTUGUESE":
        return "white"
    if race.startswith("BLACK"):
        return "black"
    if race.startswith("ASIAN"):
        return "asian"
    if race.startswith("HISPANIC") or race == "SOUTH AMERICAN":
        return "hispanic"
    return "other"


@dataclass(frozen=True)
class FindingSpec:
    name: str            # Diff-VQA official name
    chexpert: str        # CheXpert column
    sides: tuple         # possible sides (patient's side); () = no side
    zones: tuple         # possible zones; () = none
    levels: tuple        # ordered severity words (all in the released VQA vocabulary)
    p_on: float          # per-study probability to appear when absent
    p_off: float         # per-study probability to resolve when present
    type_word: str | None = None


FINDINGS = (
    FindingSpec("pleural effusion", "Pleural Effusion", ("left", "right", "bilateral"), (), ("small", "moderate", "large"), 0.22, 0.25),
    FindingSpec("cardiomegaly", "Cardiomegaly", (), (), ("mild", "moderate", "severe"), 0.10, 0.08),
    FindingSpec("edema", "Edema", ("bilateral",), (), ("mild", "moderate", "severe"), 0.12, 0.35),
    FindingSpec("pneumothorax", "Pneumothorax", ("left", "right"), ("apical",), ("small", "moderate", "large"), 0.06, 0.5),
    FindingSpec("atelectasis", "Atelectasis", ("left", "right", "bilateral"), ("basal",), ("minimal", "mild", "moderate"), 0.15, 0.35, "linear"),
    FindingSpec("consolidation", "Consolidation", ("left", "right"), ("upper", "middle", "lower"), ("mild", "moderate", "severe"), 0.07, 0.45),
    FindingSpec("pneumonia", "Pneumonia", ("left", "right"), ("upper", "middle", "lower"), ("mild", "moderate", "severe"), 0.07, 0.5),
    FindingSpec("lung opacity", "Lung Opacity", ("left", "right"), ("upper", "middle", "lower"), ("mild", "moderate", "severe"), 0.10, 0.4, "patchy"),
)
FINDING_BY_NAME = {f.name: f for f in FINDINGS}

# Study types: (PerformedProcedureStepDescription, true views of its images, weight)
STUDY_TYPES = (
    ("CHEST (PA AND LAT)", ("PA", "LATERAL"), 0.80),
    ("CHEST (PORTABLE AP)", ("AP",), 0.17),
    ("CHEST (PRE-OP PA AND LAT)", ("PA", "LATERAL"), 0.03),
)
VIEW_CODE_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
ANCHOR_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")

# Patient reference frames (pixels): every image is a similarity transform of one of them.
REF_FRONTAL = (512, 448)   # (height, width) of the PA/AP reference frame
REF_LATERAL = (512, 448)
N_LUNG_TEMPLATES = 8
FOLLOWUP_JITTER = 0.02  # a patient's images: gain and gamma within +-2% of the patient's own (see _build_images)


def _assign_vqa_splits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Patient-level Diff-VQA split, about 70/15/15, every split populated when n >= 3."""
    n_val = max(1, int(round(0.15 * n))) if n >= 3 else 0
    n_test = max(1, int(round(0.15 * n))) if n >= 3 else 0
    splits = np.array(["val"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test), dtype=object)
    rng.shuffle(splits)
    return splits


# Race mixes: "mimic" draws the vocabulary with the weights above (~3% Asian, ~14% Black, as MIMIC);
# "balanced" rescales them so White, Black and Asian patients are equally frequent (30% each, the
# rest 10%; proportions within a group kept): with a few dozen evaluation pairs every group of
# Table 2's race AUROC is then present in the bootstrap resamples.
RACE_MIXES = ("mimic", "balanced")
BALANCED_GROUPS = {"white": 0.3, "black": 0.3, "asian": 0.3, "hispanic": 0.05, "other": 0.05}


def race_weights(mix: str = "mimic") -> np.ndarray:
    """Probabilities over ``RACE_NAMES`` for a race mix (see ``RACE_MIXES``)."""
    if mix not in RACE_MIXES:
        raise ValueError(f"race mix must be one of {RACE_MIXES}, got {mix!r}")
    w = np.array([wt for _, wt in RACES], dtype=float)
    if mix == "balanced":
        groups = np.array([race_group(r) for r in RACE_NAMES])
        for g, share in BALANCED_GROUPS.items():
            w[groups == g] *= share / w[groups == g].sum()
    return w / w.sum()


def build_truth(patients: int, seed: int, race_mix: str = "mimic") -> dict[str, pd.DataFrame]:
    """Draw the whole truth. Returns DataFrames patients, studies, images, findings, defects."""
    rng = np.random.default_rng([seed, 20240101])
    n = int(patients)
    sids = ids.subject_ids(rng, n)
    order = np.argsort(sids, kind="stable")
    sids = sids[order]
    gender = rng.choice(np.array(["F", "M"], dtype=object), size=n)
    anchor_age = np.clip(np.round(rng.normal(62, 17, size=n)), 18, 95).astype(np.int64)
    anchor_age[anchor_age > 89] = 91
    anchor_year = rng.integers(2110, 2190, size=n)
    year_group = rng.choice(np.array(ANCHOR_YEAR_GROUPS, dtype=object), size=n)
    race = np.array(RACE_NAMES, dtype=object)[rng.choice(len(RACES), size=n, p=race_weights(race_mix))]
    lung_template = rng.integers(0, N_LUNG_TEMPLATES, size=n)
    habitus = rng.uniform(0.92, 1.08, size=n)
    vqa_split = _assign_vqa_splits(rng, n)
    jpg_split = np.array([{"train": "train", "val": "validate", "test": "test"}[s] for s in vqa_split], dtype=object)
    n_studies = rng.integers(2, 6, size=n)
    dies = rng.random(n) < 0.1

    pat = pd.DataFrame({
        "subject_id": sids, "gender": gender, "anchor_age": anchor_age, "anchor_year": anchor_year,
        "anchor_year_group": year_group, "race": race,
        "race_group": [race_group(r) for r in race], "lung_template": lung_template,
        "habitus": habitus, "vqa_split": vqa_split, "jpg_split": jpg_split,
        "n_studies": n_studies, "folder": [f"p{str(s)[:2]}" for s in sids],
    })

    total = int(n_studies.sum())
    study_id_pool = ids.study_ids(rng, total)
    type_w = np.array([t[2] for t in STUDY_TYPES])
    type_idx = rng.choice(len(STUDY_TYPES), size=total, p=type_w / type_w.sum())
    gaps = rng.integers(1, 240, size=total)
    times = rng.integers(0, 86400, size=total)
    millis = rng.integers(0, 1000, size=total)
    start = rng.integers(0, 200, size=n)
    uni = rng.random((total, len(FINDINGS), 3))
    init_level = rng.integers(0, 3, size=(total, len(FINDINGS)))

    # dates, vectorised: day offset = patient start + cumulative gaps after the first study
    pat_of = np.repeat(np.arange(n), n_studies)
    first = np.concatenate([[0], np.cumsum(n_studies)[:-1]])
    g = gaps.copy()
    g[first] = 0
    cum = np.cumsum(g)
    day = start[pat_of] + cum - cum[first][pat_of]
    base = (anchor_year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    dates = pd.DatetimeIndex(base[pat_of] + day.astype("timedelta64[D]"))
    study_date = (dates.year * 10000 + dates.month * 100 + dates.day).to_numpy().astype(np.int64)
    hhmmss = (times // 3600) * 10000 + ((times // 60) % 60) * 100 + times % 60
    study_time = (hhmmss * 1000 + millis) / 1000.0  # correctly rounded: the shortest repr is HHMMSS.fff
    order = np.arange(total) - first[pat_of] + 1
    age = anchor_age[pat_of] + (dates.year.to_numpy() - anchor_year[pat_of])

    # findings evolve: appear, resolve, change level (sides/zones fixed while present)
    finding_rows = []
    specs = list(enumerate(FINDINGS))
    for i in range(n):
        state: dict[int, list] = {}
        for k in range(int(first[i]), int(first[i] + n_studies[i])):
            u = uni[k]
            for fi, spec in specs:
                cur = state.get(fi)
                if cur is None:
                    if u[fi, 0] < spec.p_on:
                        side = spec.sides[int(u[fi, 1] * len(spec.sides))] if spec.sides else None
                        zone = spec.zones[int(u[fi, 2] * len(spec.zones))] if spec.zones else None
                        state[fi] = [side, zone, int(init_level[k, fi]) % len(spec.levels)]
                elif u[fi, 0] < spec.p_off:
                    del state[fi]
                elif u[fi, 1] < 0.3:
                    cur[2] = min(len(spec.levels) - 1, max(0, cur[2] + (1 if u[fi, 2] < 0.5 else -1)))
            sid = int(study_id_pool[k])
            for fi in sorted(state):
                side, zone, lvl = state[fi]
                finding_rows.append((int(sids[i]), sid, FINDINGS[fi].name, side, zone, FINDINGS[fi].levels[lvl], lvl))
    last_day = base + (start + cum[first + n_studies - 1] - cum[first]).astype("timedelta64[D]")
    dod = np.datetime_as_string(last_day + np.timedelta64(30, "D"), unit="D").astype(object)
    pat["dod"] = np.where(dies, dod, None)
    st_names = np.array([t[0] for t in STUDY_TYPES], dtype=object)
    st_views = np.array(["|".join(t[1]) for t in STUDY_TYPES], dtype=object)
    studies = pd.DataFrame({
        "subject_id": sids[pat_of], "study_id": study_id_pool, "study_order": order.astype(np.int64),
        "StudyDate": study_date, "StudyTime": study_time, "study_type": st_names[type_idx],
        "views": st_views[type_idx], "age_at_study": age.astype(np.int64),
        "vqa_split": vqa_split[pat_of], "jpg_split": jpg_split[pat_of],
    })
    findings = pd.DataFrame(finding_rows, columns=["subject_id", "study_id", "finding", "side", "zone", "level", "level_rank"])
    images = _build_images(rng, studies)
    images, defects = _plant_defects(rng, pat, studies, images)
    return {"patients": pat, "studies": studies, "images": images, "findings": findings, "defects": defects}


def _build_images(rng: np.random.Generator, studies: pd.DataFrame) -> pd.DataFrame:
    views = studies["views"].str.split("|")
    img = studies[["subject_id", "study_id"]].loc[views.index.repeat(views.str.len())].reset_index(drop=True)
    img["true_view"] = [v for vs in views for v in vs]
    m = len(img)
    img.insert(0, "dicom_id", ids.dicom_ids(rng, m))
    img["height"] = rng.integers(464, 513, size=m)
    img["width"] = rng.integers(384, 449, size=m)
    img["angle_deg"] = rng.uniform(-10, 10, size=m)
    img["angle_rad"] = np.deg2rad(img["angle_deg"])
    img["scale"] = rng.uniform(0.9, 1.1, size=m)
    img["tx"] = rng.uniform(-0.06, 0.06, size=m) * img["width"]
    img["ty"] = rng.uniform(-0.06, 0.06, size=m) * img["height"]
    # Exposure: each patient has an acquisition setting (gain 0.85-1.15, gamma 0.8-1.25, noise sigma
    # 0.005-0.03, the values drawn for the patient's first image) and each later image varies it by
    # a small follow-up nuisance (gain and gamma within +-FOLLOWUP_JITTER, noise within +-10%):
    # follow-ups of one patient then differ mainly by their findings, as an editor's input and
    # target should (an independent draw per image made most of |input - target| exposure).
    # The draws are the same as one independent draw per image, so every later draw is unchanged.
    exposure = rng.uniform(0.85, 1.15, size=m)
    gamma = rng.uniform(0.8, 1.25, size=m)
    noise = rng.uniform(0.005, 0.03, size=m)
    subj = img["subject_id"].to_numpy()
    first = pd.Series(np.arange(m)).groupby(subj).transform("min").to_numpy()
    j = FOLLOWUP_JITTER
    img["exposure"] = exposure[first] * (1 + j * (exposure - 1.0) / 0.15)
    img["gamma"] = gamma[first] * (1 + j * (gamma - 1.025) / 0.225)
    img["noise_sigma"] = noise[first] * (1 + 0.1 * (noise - 0.0175) / 0.0125)
    img["ref_height"] = REF_FRONTAL[0]
    img["ref_width"] = REF_FRONTAL[1]
    img["metadata_view"] = img["true_view"].astype(object)
    img["view_label_error"] = None
    img["mirrored"] = False
    img["cropped"] = False
    img["crop_box"] = None
    img["truncated"] = False
    img["render_subject_id"] = img["subject_id"]
    img["render_study_id"] = img["study_id"]
    img["path"] = [ids.image_rel_path(s, t, d) for s, t, d in zip(img["subject_id"], img["study_id"], img["dicom_id"])]
    return img


def _plant_defects(rng, pat, studies, images):
    """Plant the defects of docs/synthetic.md and return (images, defects)."""
    m = len(images)
    defects = []
    used: set[int] = set()
    order = studies.set_index("study_id")["study_order"]
    later = images["study_id"].map(order).to_numpy() > 1
    frontal = images["true_view"].isin(["PA", "AP"]).to_numpy()
    pa = (images["true_view"] == "PA").to_numpy()

    def pick(mask, count):
        cand = np.setdiff1d(np.flatnonzero(mask), np.fromiter(used, dtype=np.int64, count=len(used)))
        if not len(cand):
            return []
        chosen = sorted(rng.choice(cand, size=min(count, len(cand)), replace=False).tolist())
        used.update(chosen)
        return chosen

    subj_col, study_col, dicom_col = (images[c].to_numpy() for c in ("subject_id", "study_id", "dicom_id"))

    def add(i, kind, detail):
        defects.append((kind, int(subj_col[i]), int(study_col[i]), dicom_col[i], detail))

    scale_n = max(1, m // 400)
    for i in pick(later & pa, scale_n):  # left-right mirrored
        images.at[i, "mirrored"] = True
        add(i, "mirrored", "image flipped left-right after the acquisition transform")
    # a study holding another patient's frontal image
    subjects = pat["subject_id"].to_numpy()
    for i in pick(later & pa, scale_n):
        own = images.at[i, "subject_id"]
        others = subjects[subjects != own]
        if len(others):
            other = int(others[int(rng.integers(0, len(others)))])
            other_study = int(studies.loc[studies.subject_id == other, "study_id"].iloc[0])
            images.at[i, "render_subject_id"] = other
            images.at[i, "render_study_id"] = other_study
            add(i, "foreign_image", f"anatomy and findings of subject {other} study {other_study}")
    for i in pick(later & pa, scale_n):  # grossly cropped: cannot be aligned
        h, w = int(images.at[i, "height"]), int(images.at[i, "width"])
        x0, y0 = int(0.05 * w), int(0.02 * h)
        box = (x0, y0, x0 + int(0.42 * w), y0 + int(0.38 * h))
        images.at[i, "cropped"] = True
        images.at[i, "crop_box"] = ",".join(map(str, box))
        # the image is the crop: keep the transform exact for the cropped pixel grid
        cw, ch = box[2] - box[0], box[3] - box[1]
        images.at[i, "tx"] = images.at[i, "tx"] + (w - 1) / 2 - box[0] - (cw - 1) / 2
        images.at[i, "ty"] = images.at[i, "ty"] + (h - 1) / 2 - box[1] - (ch - 1) / 2
        images.at[i, "width"], images.at[i, "height"] = cw, ch
        add(i, "unalignable", f"grossly cropped to x0,y0,x1,y1={images.at[i, 'crop_box']} of the rendered image")
    n_err = max(1, int(round(0.02 * m)))
    for i in pick(frontal, n_err):  # wrong ViewPosition
        wrong = "AP" if images.at[i, "true_view"] == "PA" else "PA"
        images.at[i, "metadata_view"] = wrong
        images.at[i, "view_label_error"] = "wrong"
        add(i, "wrong_view_label", f"ViewPosition {wrong} but the image is {images.at[i, 'true_view']}")
    for i in pick(~frontal, max(1, n_err // 2)):
        images.at[i, "metadata_view"] = "PA"
        images.at[i, "view_label_error"] = "wrong"
        add(i, "wrong_view_label", "ViewPosition PA but the image is LATERAL")
    for i in pick(np.ones(m, bool), max(1, int(round(0.015 * m)))):
        images.at[i, "metadata_view"] = None
        images.at[i, "view_label_error"] = "missing"
        add(i, "missing_view_label", f"ViewPosition missing; the image is {images.at[i, 'true_view']}")
    for i in pick(np.ones(m, bool), max(1, int(round(0.01 * m)))):
        images.at[i, "truncated"] = True
        add(i, "truncated_jpg", "JPEG file cut to half its bytes")
    defects = pd.DataFrame(defects, columns=["defect", "subject_id", "study_id", "dicom_id", "detail"])
    defects = defects.sort_values(["defect", "dicom_id"], kind="stable").reset_index(drop=True)
    return images, defects


def transform_matrix(angle_rad: float, scale: float, tx: float, ty: float, ref_hw, img_hw) -> np.ndarray:
    """2x3 matrix A mapping reference-frame pixel (x, y, 1) to image pixel (x', y').

    p_img = scale * R(angle) @ (p_ref - c_ref) + c_img + (tx, ty), R = [[cos, -sin], [sin, cos]],
    x to the right, y down (so a positive angle turns the anatomy clockwise on screen);
    c_ref, c_img = ((W-1)/2, (H-1)/2) of the reference frame and of the image.
    """
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    cxr, cyr = (ref_hw[1] - 1) / 2, (ref_hw[0] - 1) / 2
    cxi, cyi = (img_hw[1] - 1) / 2, (img_hw[0] - 1) / 2
    R = scale * np.array([[c, -s], [s, c]])
    t = np.array([cxi + tx, cyi + ty]) - R @ np.array([cxr, cyr])
    return np.hstack([R, t[:, None]])
