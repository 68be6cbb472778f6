"""The images table the views stage reads (``tables/images.parquet``), checked."""

from __future__ import annotations

import pandas as pd

IMAGES_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "image_path")


def require_columns(df: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(columns)}")


def read_images_table(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    require_columns(df, IMAGES_COLUMNS, path)
    if df["dicom_id"].duplicated().any():
        raise ValueError(f"{path}: column dicom_id must be unique")
    return df.sort_values("dicom_id", kind="stable").reset_index(drop=True)
