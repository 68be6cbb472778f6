"""Atomic file writing: partial files never count as outputs.

Everything is written to a temporary name beside the target and renamed into place only once it
is complete, so a job killed mid-write leaves no file that Snakemake (or a person) could mistake
for a finished output.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame, path: str | Path, metadata: dict | None = None) -> None:
    """Write a table deterministically (no pandas index, fixed row order as given) and atomically;
    ``metadata`` (str -> str) is added to the parquet schema metadata (see ``core.paths``)."""
    with atomic_path(path) as tmp:
        if not metadata:
            df.reset_index(drop=True).to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
        pq.write_table(table, tmp, compression="zstd")


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
