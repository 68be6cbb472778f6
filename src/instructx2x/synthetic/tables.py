"""Byte-reproducible writers for the raw file formats (CSV, gzip CSV, JSON, plain lists)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd


def csv_bytes(df: pd.DataFrame) -> bytes:
    """pandas ``to_csv`` (QUOTE_MINIMAL, no index, ``\\n`` line ends, NaN as empty cells)."""
    return df.to_csv(index=False, lineterminator="\n").encode("utf-8")


def write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(df))


def write_csv_gz(df: pd.DataFrame, path: Path) -> None:
    """gzip with mtime 0 and no file name in the header, so equal tables give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(csv_bytes(df))
    path.write_bytes(buf.getvalue())


def _indented(value, level: int) -> str:
    """``json.dumps(value, indent=4)`` at nesting ``level``, using the C encoder for scalars."""
    pad = "    " * (level + 1)
    end = "    " * level
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ",\n".join(f"{pad}{json.dumps(k)}: {_indented(v, level + 1)}" for k, v in value.items())
        return "{\n" + items + "\n" + end + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(pad + _indented(v, level + 1) for v in value) + "\n" + end + "]"
    return json.dumps(value)


def write_json_list(records: list, path: Path) -> None:
    """Exactly the bytes of ``json.dump(records, fh, indent=4)`` (the Diff-VQA generator), faster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_indented(records, 0))


def write_lines(lines, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))
