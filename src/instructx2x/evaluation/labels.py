"""Evaluation targets per pair: CheXpert labels of the current study, race, age at the study.

- Pathology labels: the five findings of Table 2 from the *current* (target) study's CheXpert
  columns (``studies.parquet``). Label cells are 1.0 positive, 0.0 negative, -1.0 uncertain,
  NaN not mentioned. The rule for uncertain cells is configurable (``evaluation.uncertain``):
  ``zero`` (U-zeros, default: uncertain counts as negative), ``one`` (U-ones) or ``exclude``
  (the pair is left out of that finding's AUROC only). Not-mentioned cells count as negative
  (``evaluation.missing``: ``zero``) or are excluded (``exclude``).
- Race: self-reported race from MIMIC-IV admissions mapped to Asian / Black / White by prefix
  (``ASIAN*``, ``BLACK*``, ``WHITE*``); any other value, no admission, or (rule ``consistent``,
  default) more than one distinct group across admissions leaves the race missing, and the
  subject is counted in the ledger. Rule ``first`` takes the earliest admission instead.
- Age at the study: ``anchor_age + (StudyDate // 10000 - anchor_year)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FINDINGS = ("Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion", "Pneumothorax")
RACES = ("Asian", "Black", "White")
UNCERTAIN_RULES = ("zero", "one", "exclude")
MISSING_RULES = ("zero", "exclude")
RACE_RULES = ("consistent", "first")


def map_race(value) -> str | None:
    """MIMIC-IV ``race`` (or v1.0 ``ethnicity``) text -> Asian / Black / White, else None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().upper()
    for group in RACES:
        if text.startswith(group.upper()):
            return group
    return None


def subject_race(admissions: pd.DataFrame, rule: str = "consistent") -> pd.DataFrame:
    """One row per subject: ``subject_id, race (group or None), race_reason``."""
    if rule not in RACE_RULES:
        raise ValueError(f"evaluation.race_rule must be one of {RACE_RULES}, got {rule!r}")
    col = "race" if "race" in admissions.columns else "ethnicity"
    if col not in admissions.columns or "subject_id" not in admissions.columns:
        raise ValueError(f"admissions table: expected columns subject_id and race (or ethnicity), got {list(admissions.columns)}")
    adm = admissions.copy()
    adm["group"] = adm[col].map(map_race)
    sort_cols = ["subject_id"] + (["admittime"] if "admittime" in adm.columns else [])
    adm = adm.sort_values(sort_cols, kind="stable")
    rows = []
    for sid, g in adm.groupby("subject_id", sort=True):
        groups = sorted(set(g["group"].dropna()))
        if rule == "first":
            first = g["group"].iloc[0]
            rows.append((sid, first, "" if first else f"first admission race not Asian/Black/White: {g[col].iloc[0]}"))
        elif len(groups) == 1:
            rows.append((sid, groups[0], ""))
        elif len(groups) > 1:
            rows.append((sid, None, "inconsistent race across admissions: " + ",".join(groups)))
        else:
            rows.append((sid, None, "race not Asian/Black/White: " + ",".join(sorted(set(g[col].dropna().astype(str))))))
    return pd.DataFrame(rows, columns=["subject_id", "race", "race_reason"])


def apply_label_rule(values: pd.Series, uncertain: str = "zero", missing: str = "zero") -> pd.Series:
    """CheXpert cells -> 1.0 / 0.0 / NaN (NaN = excluded from that finding's AUROC)."""
    if uncertain not in UNCERTAIN_RULES:
        raise ValueError(f"evaluation.uncertain must be one of {UNCERTAIN_RULES}, got {uncertain!r}")
    if missing not in MISSING_RULES:
        raise ValueError(f"evaluation.missing must be one of {MISSING_RULES}, got {missing!r}")
    v = values.astype("float64")
    out = pd.Series(np.nan, index=v.index, dtype="float64")
    out[v == 1.0] = 1.0
    out[v == 0.0] = 0.0
    if uncertain != "exclude":
        out[v == -1.0] = 1.0 if uncertain == "one" else 0.0
    if missing == "zero":
        out[v.isna()] = 0.0
    return out


def study_labels(studies: pd.DataFrame, uncertain: str = "zero", missing: str = "zero") -> pd.DataFrame:
    """``subject_id, study_id, StudyDate, <FINDINGS>`` with the uncertain/missing rules applied."""
    need = ["subject_id", "study_id", "StudyDate", *FINDINGS]
    absent = [c for c in need if c not in studies.columns]
    if absent:
        raise ValueError(f"studies table: missing columns {absent} (expected CheXpert label columns as float64)")
    out = studies[need].copy()
    for f in FINDINGS:
        out[f] = apply_label_rule(out[f], uncertain, missing)
    return out


def age_at_study(study_date, anchor_age, anchor_year):
    """``anchor_age + (StudyDate year - anchor_year)`` (StudyDate as YYYYMMDD int)."""
    return np.asarray(anchor_age, dtype="float64") + (np.asarray(study_date, dtype="float64") // 10000 - np.asarray(anchor_year, dtype="float64"))


def pair_targets(pairs: pd.DataFrame, studies: pd.DataFrame, patients: pd.DataFrame, admissions: pd.DataFrame,
                 *, uncertain: str = "zero", missing: str = "zero", race_rule: str = "consistent", ledger=None) -> pd.DataFrame:
    """Targets per pair (``pair_id, subject_id`` and the current study id from the pair id).

    Returns ``pair_id, subject_id, study_id, <FINDINGS>, race, age``; pairs whose race or age is
    unknown keep NaN/None there (excluded from that metric only) and are counted in ``ledger``.
    """
    for col in ("pair_id", "subject_id"):
        if col not in pairs.columns:
            raise ValueError(f"pairs: missing column {col!r}")
    df = pairs[["pair_id", "subject_id"]].drop_duplicates("pair_id").copy()
    if "current_study_id" in pairs.columns:
        df["study_id"] = pairs.drop_duplicates("pair_id")["current_study_id"].astype("int64").to_numpy()
    else:  # pair_id = "<current_study>_<past_study>"
        df["study_id"] = df["pair_id"].astype(str).str.split("_").str[0].astype("int64")
    df["subject_id"] = df["subject_id"].astype("int64")
    labels = study_labels(studies, uncertain, missing)
    df = df.merge(labels.drop(columns="subject_id"), on="study_id", how="left")
    for col in ("subject_id", "anchor_age", "anchor_year"):
        if col not in patients.columns:
            raise ValueError(f"patients table: missing column {col!r}")
    df = df.merge(patients[["subject_id", "anchor_age", "anchor_year"]], on="subject_id", how="left")
    df["age"] = age_at_study(df["StudyDate"], df["anchor_age"], df["anchor_year"])
    races = subject_race(admissions, race_rule)
    df = df.merge(races, on="subject_id", how="left")
    df["race_reason"] = df["race_reason"].fillna("no admission")
    df.loc[df["race"].notna(), "race_reason"] = ""
    if ledger is not None:
        n = len(df)
        no_study = df["StudyDate"].isna()
        for pid in df.loc[no_study, "pair_id"]:
            ledger.set_aside("pair", pid, "no CheXpert labels for the current study")
        no_race = df["race"].isna()
        for pid, why in zip(df.loc[no_race, "pair_id"], df.loc[no_race, "race_reason"]):
            ledger.set_aside("pair", pid, "race excluded", why)
        no_age = df["age"].isna()
        for pid in df.loc[no_age, "pair_id"]:
            ledger.set_aside("pair", pid, "age unknown")
        ledger.count("labels: current study found", n, int((~no_study).sum()))
        ledger.count("race: Asian/Black/White", n, int((~no_race).sum()), f"rule {race_rule}")
        ledger.count("age known", n, int((~no_age).sum()))
    df["race"] = df["race"].astype(object).where(df["race"].notna(), None)
    return df[["pair_id", "subject_id", "study_id", *FINDINGS, "race", "age"]].sort_values("pair_id", kind="stable").reset_index(drop=True)
