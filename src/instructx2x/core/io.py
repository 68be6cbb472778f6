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


def read_input_table(path: str | Path, columns=(), what: str = "a parquet table") -> pd.DataFrame:
    """Read a parquet table a user (or an earlier stage) hands in; every problem is an ``InputError``.
    Path columns stored relative to the results directory (``core.paths``) come back absolute.

    A missing path, a folder, a file that is not parquet, or a table without the ``columns`` it
    must have, each gives one line naming the file and what was expected (``what``).
    """
    from instructx2x.core.errors import InputError, MissingInput

    path = Path(path)
    if not path.exists():
        raise MissingInput(f"{path}: no such file; expected {what}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected {what} (a .parquet file)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a non-parquet file
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"{path}: not a readable parquet table ({reason}); expected {what}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {what} with at least {list(columns)}")
    from instructx2x.core.paths import resolve_columns

    return resolve_columns(df, path)  # file paths relative to the results directory come back absolute
