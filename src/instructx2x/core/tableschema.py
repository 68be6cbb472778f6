"""Schema-driven reading and checking of tables (``schemas/tables/*.schema.yaml``).

A raw table schema lists the exact columns of a file, in order, each with a ``dtype`` (``str``,
``int64``, ``float64``, ``datetime64[ns]``) and optional checks: ``nullable`` (empty cells
allowed), ``id`` (one of ``ID_FORMATS``: the MIMIC identifier formats of data-contract §0),
``enum``/``enum_casefold`` (a closed vocabulary), ``values`` (allowed numbers), ``min``/``max``,
``pattern`` (a full-match regex) and ``format`` (a strptime format for datetimes).

``read_csv_table`` reads a CSV (plain or gzip) with every cell as text (pyarrow's CSV reader;
pandas' when something is wrong, for a precise message), then converts and checks each column
with vectorised pandas operations (no per-row Python). The first problem raises
``TableError`` naming the file, the line (1-based, the header is line 1), the column and what was
expected. A column marked ``bad_rows: set_aside`` in its schema holds per-item content (free text
such as a Diff-VQA answer): a bad value there (an empty cell, a value outside its vocabulary) does
not stop the run; when the caller passes ``set_aside``, the row is left out and reported to it
(file line, column, value, what was expected) so that it can go to the ledger. Identifiers, keys,
labels and the header stay strict: a bad one means the table is not what it should be.
``write_table`` checks a table the pipeline is about to write against its schema
(``check_frame``) and writes it atomically (``io.atomic_path``) with the schema's exact parquet
types (an all-null column keeps its type), zstd-compressed like ``io.write_parquet``.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from instructx2x.core.config import SCHEMA_DIR
from instructx2x.core.io import atomic_path

from instructx2x.core.errors import InputError, MissingInput

TABLE_SCHEMA_DIR = SCHEMA_DIR / "tables"
# An editing operation as a parquet struct (instructx2x.instructions.operation: Operation.to_dict,
# sources restricted to SOURCE_KEYS); a column of dtype ``list<operation>`` holds a list of them.
_OPERATION_SOURCES = ("location", "severity", "from_level", "to_level", "study", "levels_split", "direction",
                      "location_span", "severity_span")
OPERATION_ARROW_TYPE = pa.struct(
    [pa.field(k, pa.string()) for k in ("op", "finding", "location", "severity", "from_level", "to_level", "direction")]
    + [pa.field("sources", pa.struct([pa.field(k, pa.string()) for k in _OPERATION_SOURCES]))]
)
# Parquet types of the written tables: explicit, so that an all-null column keeps its type.
ARROW_TYPES = {
    "str": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "datetime64[ns]": pa.timestamp("ns"),
    "list<str>": pa.list_(pa.string()),
    "list<operation>": pa.list_(OPERATION_ARROW_TYPE),
}

# Identifier formats (data-contract §0). Integer ids are checked by range, string ids by regex.
ID_FORMATS = {
    "subject_id": {"min": 10_000_000, "max": 19_999_999, "what": "an 8-digit subject_id in 10000000-19999999"},
    "study_id": {"min": 50_000_000, "max": 59_999_999, "what": "an 8-digit study_id in 50000000-59999999"},
    "hadm_id": {"min": 20_000_000, "max": 29_999_999, "what": "an 8-digit hadm_id in 20000000-29999999"},
    "dicom_id": {
        "pattern": r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}",
        "what": "a dicom_id of five groups of 8 lowercase hex digits joined by '-'",
    },
    "image_path": {
        "pattern": r"files/p1\d/p1\d{7}/s5\d{7}/[0-9a-f]{8}(?:-[0-9a-f]{8}){4}\.jpg",
        "what": "a relative image path files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg",
    },
    "subject_id_str": {"pattern": r"1\d{7}", "what": "an 8-digit subject_id string in 10000000-19999999"},
    "study_id_str": {"pattern": r"5\d{7}", "what": "an 8-digit study_id string in 50000000-59999999"},
}


class TableError(InputError):
    """A raw or written table does not match its schema; the message names file, line and column.

    Raised for a bad column value, ``rows`` holds the data-row labels of every bad row of that
    column and ``expected`` what was expected (used to set rows aside, see ``read_csv_table``).
    """

    def __init__(self, message: str, rows=None, expected: str = ""):
        super().__init__(message)
        self.rows = [] if rows is None else list(rows)
        self.expected = expected


def load_schema(name: str, schema_dir: str | Path = TABLE_SCHEMA_DIR) -> dict:
    """The table schema ``schemas/tables/<name>.schema.yaml``."""
    path = Path(schema_dir) / f"{name}.schema.yaml"
    with open(path) as fh:
        schema = yaml.safe_load(fh)
    schema["_file"] = str(path)
    return schema


def schemas_version(names, schema_dir: str | Path = TABLE_SCHEMA_DIR) -> str:
    """Short hash of the named table schemas (a rule param, so editing one re-runs the rule)."""
    digest = hashlib.sha256()
    for path in sorted(Path(schema_dir) / f"{name}.schema.yaml" for name in names):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def column_names(schema: dict) -> list[str]:
    return [c["name"] for c in schema["columns"]]


# --------------------------------------------------------------------------------------------
# Reading raw CSV tables


def _lines_before_truncation(path: Path) -> int:
    """Number of complete lines a truncated gzip still holds (for the error message)."""
    lines = 0
    decomp = zlib.decompressobj(zlib.MAX_WBITS | 16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                lines += decomp.decompress(chunk).count(b"\n")
            except zlib.error:
                break
    return lines


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _read_text_frame(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """Every cell as text (empty cells as ``""``), with the pandas C parser (precise error messages)."""
    compression = "gzip" if _is_gzip(path) else None
    try:
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            compression=compression,
            nrows=nrows,
            encoding="utf-8",
        )
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        n = _lines_before_truncation(path)
        raise TableError(
            f"{path}: truncated or corrupt gzip ({exc}); the readable part ends after line {n}, "
            f"so the row at line {n + 1} is incomplete. Re-download the file."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise TableError(f"{path}: line 1: the file is empty; expected a CSV header") from exc
    except pd.errors.ParserError as exc:
        raise TableError(f"{path}: malformed CSV: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text ({exc})") from exc


def _read_text_fast(path: Path, columns: list[str]) -> pd.DataFrame:
    """Every cell as text with pyarrow's multi-threaded CSV reader (several times faster than pandas).

    Any problem (truncated gzip, ragged row, bad UTF-8) falls back to the pandas reader, whose
    error names the line.
    """
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, EOFError, zlib.error):
        return _read_text_frame(path)
    if table.column_names != columns:
        return _read_text_frame(path)
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow", na_value=np.nan)}.get)


def check_header(path: Path, found: list[str], expected: list[str]) -> None:
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing column(s) {missing}")
    if extra:
        parts.append(f"unexpected column(s) {extra}")
    if not parts:
        parts.append("columns in the wrong order")
    raise TableError(f"{path}: line 1 (header): {'; '.join(parts)}; expected exactly {expected}, found {found}")


def _fail(path: Path, col: str, series: pd.Series, bad: pd.Series, expected: str) -> None:
    idx = np.flatnonzero(bad.to_numpy(dtype=bool))
    if len(idx) == 0:
        return
    value = series.iloc[int(idx[0])]
    i = int(series.index[int(idx[0])])  # the data row (the index is the row number in the file)
    raise TableError(
        f"{path}: line {i + 2} (data row {i}), column '{col}': expected {expected}, got {value!r}"
        f" ({len(idx)} bad row(s) in this column)",
        rows=[int(series.index[j]) for j in idx],
        expected=expected,
    )


def _has_path_chars(s: pd.Series) -> pd.Series:
    return s.str.contains("/", regex=False) | s.str.contains("\\", regex=False) | s.str.contains("..", regex=False)


def convert_column(path: Path, spec: dict, raw: pd.Series) -> pd.Series:
    """Convert one text column to its dtype and run its checks; raise ``TableError`` at the first bad row."""
    col, dtype = spec["name"], spec["dtype"]
    nullable = bool(spec.get("nullable", False))
    empty = raw == ""
    if not nullable:
        _fail(path, col, raw, empty, f"a value ({dtype}); empty cells are not allowed")
    id_fmt = ID_FORMATS.get(spec["id"]) if spec.get("id") else None
    if spec.get("id") and id_fmt is None:
        raise KeyError(f"schema for {path}: unknown id format {spec['id']!r}")

    if dtype == "str":
        present = ~empty
        if id_fmt is not None:
            if spec["id"] != "image_path":
                _fail(path, col, raw, present & _has_path_chars(raw), "an id without a path separator or '..'")
            else:
                _fail(path, col, raw, present & raw.str.contains("..", regex=False), "a path without '..'")
            pattern = id_fmt["pattern"]
            _fail(path, col, raw, present & ~raw.str.fullmatch(pattern), id_fmt["what"])
        if "pattern" in spec:
            _fail(path, col, raw, present & ~raw.str.fullmatch(spec["pattern"]), f"text matching {spec['pattern']!r}")
        if "enum" in spec:
            allowed = [str(v) for v in spec["enum"]]
            _fail(path, col, raw, present & ~raw.isin(allowed), f"one of {allowed}" + (" or empty" if nullable else ""))
        if "enum_casefold" in spec:
            allowed = [str(v) for v in spec["enum_casefold"]]
            bad = present & ~raw.str.lower().isin([a.lower() for a in allowed])
            _fail(path, col, raw, bad, f"one of {allowed} (case-insensitive)")
        out = raw.astype("str")
        if nullable:
            out = out.where(present, None)
        return out

    if dtype == "int64":
        present = ~empty
        _fail(path, col, raw, present & ~raw.str.fullmatch(r"-?\d{1,18}"), "an integer" + (" or empty" if nullable else ""))
        values = raw.astype("int64") if not nullable else pd.to_numeric(raw.where(present, None)).astype("Int64")
        if id_fmt is not None:
            lo, hi, what = id_fmt["min"], id_fmt["max"], id_fmt["what"]
            _fail(path, col, raw, present & ((values < lo) | (values > hi)), what)
        _check_range(path, col, raw, values, spec, present)
        return values

    if dtype == "float64":
        present = ~empty
        values = pd.to_numeric(raw.where(present, None), errors="coerce").astype("float64")
        _fail(path, col, raw, present & values.isna(), "a number" + (" or empty" if nullable else ""))
        if "values" in spec:
            allowed = [float(v) for v in spec["values"]]
            _fail(path, col, raw, present & ~values.isin(allowed), f"one of {allowed}" + (" or empty" if nullable else ""))
        _check_range(path, col, raw, values, spec, present)
        return values

    if dtype == "datetime64[ns]":
        present = ~empty
        fmt = spec["format"]
        values = pd.to_datetime(raw.where(present, None), format=fmt, errors="coerce").astype("datetime64[ns]")
        _fail(path, col, raw, present & values.isna(), f"a date/time in the format {fmt!r}")
        return values

    raise KeyError(f"schema for {path}: unknown dtype {dtype!r} of column {col!r}")


def _check_range(path, col, raw, values, spec, present) -> None:
    if "min" in spec:
        _fail(path, col, raw, present & (values < spec["min"]), f"a value >= {spec['min']}")
    if "max" in spec:
        _fail(path, col, raw, present & (values > spec["max"]), f"a value <= {spec['max']}")


def read_csv_table(path: str | Path, schema: dict, set_aside=None) -> pd.DataFrame:
    """Read a CSV (plain or gzip) and return it typed as ``schema`` says; raise ``TableError``.

    The index of the result is each row's data-row number in the file (line - 2). ``set_aside``:
    a callable ``(line, column, value, expected)`` that receives each row whose value in a
    ``bad_rows: set_aside`` column is bad; such rows are left out. Without it every bad value
    raises ``TableError``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInput(
            f"{path}: missing; expected the file {schema.get('path', path.name)!r} of dataset "
            f"{schema.get('dataset', '?')!r} here (see {schema.get('_file', 'its table schema')})"
        )
    expected = column_names(schema)
    header = _read_text_frame(path, nrows=0)
    check_header(path, list(header.columns), expected)
    raw = _read_text_fast(path, expected)
    raw.index = pd.RangeIndex(len(raw))
    if set_aside is not None:
        raw = _set_rows_aside(path, schema, raw, set_aside)
    out = {}
    for spec in schema["columns"]:
        out[spec["name"]] = convert_column(path, spec, raw[spec["name"]])
    return pd.DataFrame(out, columns=expected)


def _set_rows_aside(path: Path, schema: dict, raw: pd.DataFrame, set_aside) -> pd.DataFrame:
    """Leave out (and report) the rows with a bad value in a ``bad_rows: set_aside`` column."""
    keep = pd.Series(True, index=raw.index)
    for spec in schema["columns"]:
        if spec.get("bad_rows") != "set_aside":
            continue
        col = spec["name"]
        for _ in range(8):  # each pass removes the rows failing one check of this column
            try:
                convert_column(path, spec, raw.loc[keep, col])
                break
            except TableError as exc:
                if not exc.rows:
                    raise
                for i in exc.rows:
                    set_aside(i + 2, col, raw.at[i, col], exc.expected)
                keep.loc[exc.rows] = False
    return raw[keep]


# --------------------------------------------------------------------------------------------
# Checking tables before they are written


def _dtype_ok(series: pd.Series, dtype: str) -> bool:
    if dtype == "str":
        return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object
    if dtype == "int64":
        return series.dtype == np.int64
    if dtype == "float64":
        return series.dtype == np.float64
    if dtype == "bool":
        return series.dtype == bool
    if dtype == "datetime64[ns]":
        return str(series.dtype) == "datetime64[ns]"
    if dtype in ("list<str>", "list<operation>"):
        return series.dtype == object
    raise KeyError(f"unknown dtype {dtype!r}")


def check_frame(df: pd.DataFrame, schema: dict, where: str) -> None:
    """Check a table against its schema (columns in order, dtypes, nulls); raise ``TableError``."""
    expected = column_names(schema)
    if list(df.columns) != expected:
        raise TableError(f"{where}: columns {list(df.columns)} do not match the schema {expected}")
    for spec in schema["columns"]:
        s = df[spec["name"]]
        if not _dtype_ok(s, spec["dtype"]):
            raise TableError(f"{where}: column '{spec['name']}' has dtype {s.dtype}, expected {spec['dtype']}")
        if spec["dtype"] == "list<str>":
            ok = s.map(lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)))
            if not ok.all():
                i = int(np.flatnonzero(~ok.to_numpy(dtype=bool))[0])
                raise TableError(f"{where}: row {i}, column '{spec['name']}': expected a list of strings or null")
        if spec["dtype"] == "list<operation>":
            ok = s.map(lambda v: isinstance(v, list) and all(isinstance(x, dict) and x.get("op") for x in v))
            if not ok.all():
                i = int(np.flatnonzero(~ok.to_numpy(dtype=bool))[0])
                raise TableError(f"{where}: row {i}, column '{spec['name']}': expected a list of operation records")
        if not spec.get("nullable", False) and s.isna().any():
            i = int(np.flatnonzero(s.isna().to_numpy())[0])
            raise TableError(f"{where}: row {i}, column '{spec['name']}': null in a non-nullable column")


def id_format(name: str) -> re.Pattern:
    """The compiled full-match regex of a string id format."""
    return re.compile(ID_FORMATS[name]["pattern"])


def arrow_schema(schema: dict) -> pa.Schema:
    """The parquet schema of a written table."""
    return pa.schema(
        [pa.field(c["name"], ARROW_TYPES[c["dtype"]], nullable=bool(c.get("nullable", False))) for c in schema["columns"]]
    )


def write_table(df: pd.DataFrame, schema: dict, path: str | Path, metadata: dict | None = None) -> None:
    """Check ``df`` against ``schema`` and write it atomically as parquet with the schema's exact types;
    ``metadata`` (str -> str) is added to the parquet schema metadata (see ``core.paths``)."""
    check_frame(df, schema, f"table {Path(path).name}")
    table = pa.Table.from_pandas(df.reset_index(drop=True), schema=arrow_schema(schema), preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
