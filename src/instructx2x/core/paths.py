"""File paths inside tables: relative to the results directory, so a results tree can be moved or copied.

A table that holds paths of files under the results directory (registered images, edited images,
guidance maps...) stores them relative to that directory, as POSIX text, and records in its parquet
metadata which columns hold paths and where the results directory lies relative to the table file
itself (``instructx2x.results_dir``, e.g. ``..`` for ``results/instructions/instructions.parquet``).
A path outside the results directory (raw data of ``source: local`` elsewhere on disk) stays absolute.

Writers::

    df, meta = relativise(df, ["past_path", "aligned_current_path"], results_dir, out_path)
    write_parquet(df, out_path, metadata=meta)          # or tableschema.write_table(..., metadata=meta)

Readers::

    df = read_parquet(path)        # the path columns come back absolute, wherever the tree now lies

``table_results_dir(path)`` gives a table's results directory from its metadata (None for tables
without paths), so a stage that reads one table and writes another keeps the same root without
being told. Tables written before this convention (absolute paths, no metadata) read unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow.parquet as pq

ROOT_KEY = "instructx2x.results_dir"
COLUMNS_KEY = "instructx2x.path_columns"


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA or (isinstance(v, str) and v == "")


def to_table_path(path, results_dir) -> str:
    """``path`` as a table stores it: relative to ``results_dir`` (POSIX) when inside it, else absolute."""
    p = Path(os.path.abspath(path))
    root = Path(os.path.abspath(results_dir))
    try:
        return PurePosixPath(*p.relative_to(root).parts).as_posix()
    except ValueError:
        return str(p)


def resolve(value, results_dir) -> str:
    """The absolute path of a table's path value (relative values are relative to ``results_dir``)."""
    p = Path(str(value))
    return str(p) if p.is_absolute() else os.path.normpath(os.path.join(os.path.abspath(results_dir), str(p)))


def relativise(df: pd.DataFrame, columns, results_dir, table_path) -> tuple[pd.DataFrame, dict]:
    """``df`` with ``columns`` made relative to ``results_dir`` and the parquet metadata that says so.

    Empty cells (None, NaN, "") stay as they are. ``results_dir`` None leaves the paths unchanged (and
    returns no metadata): a table written outside any results directory, as in unit tests."""
    if results_dir is None:
        return df, {}
    out = df.copy()
    for col in columns:
        out[col] = out[col].map(lambda v: v if _is_missing(v) else to_table_path(v, results_dir)).astype(df[col].dtype)
    rel_root = os.path.relpath(os.path.abspath(results_dir), os.path.dirname(os.path.abspath(table_path)))
    return out, {ROOT_KEY: PurePosixPath(*Path(rel_root).parts).as_posix(), COLUMNS_KEY: json.dumps(list(columns))}


def _metadata(path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.decode().startswith("instructx2x.")}


def table_results_dir(path) -> str | None:
    """The results directory a table's relative paths refer to (from its metadata), or None."""
    meta = _metadata(path)
    if ROOT_KEY not in meta:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), meta[ROOT_KEY]))


def path_columns(path) -> list[str]:
    meta = _metadata(path)
    return json.loads(meta[COLUMNS_KEY]) if COLUMNS_KEY in meta else []


def read_parquet(path, **kwargs) -> pd.DataFrame:
    """``pandas.read_parquet`` with the table's path columns resolved to absolute paths."""
    return resolve_columns(pd.read_parquet(path, **kwargs), path)


def resolve_columns(df: pd.DataFrame, path) -> pd.DataFrame:
    """``df`` read from the table ``path`` with its path columns resolved to absolute paths."""
    root = table_results_dir(path)
    if root is None:
        return df
    for col in path_columns(path):
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if _is_missing(v) else resolve(v, root)).astype(df[col].dtype)
    return df
