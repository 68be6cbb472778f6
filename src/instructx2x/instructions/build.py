"""The instructions stage: parse every difference answer (``build_operations``, independent of
registration), then join with the registration gate's accepted pairs, assign patient-wise splits
and write the dataset and Table 1 (``build_instructions``, cheap), and optionally export the
authors' layout (``export_authors_layout``)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.io import write_text
from instructx2x.core.ledger import Ledger
from instructx2x.core.paths import read_parquet, relativise, table_results_dir
from instructx2x.core.tableschema import TableError, load_schema, write_table

from .attributes import attach_attributes, keyinfo_lookup, level_hints, question_lookup
from .difference_parser import UnparseableAnswer, parse_difference
from .grammar import render_instruction
from .operation import operations_from_json, operations_records
from .report_scope import ReportExtractor
from .splits import assign_splits
from .table1 import table1, to_markdown

log = logging.getLogger(__name__)
STAGE = "instructions"


def require_columns(df: pd.DataFrame, path, columns) -> None:
    """Fail at once naming the file and the missing column(s)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; expected at least {list(columns)} (docs/interfaces.md)")


def _read(path, columns) -> pd.DataFrame:
    df = pd.read_parquet(path)
    require_columns(df, path, columns)
    return df


def build_operations(vqa_path, diseases_path, reports_path, out_path, ledger_path, counts_path,
                     settings: dict | None = None) -> pd.DataFrame:
    """Parse all difference rows into ``instructions/operations.parquet`` (one row per pair)."""
    settings = settings or {}
    ledger = Ledger(STAGE)
    vqa = _read(vqa_path, ["study_id", "subject_id", "ref_id", "question_type", "question", "answer", "split"])
    diseases = _read(diseases_path, ["study_id", "entity", "location", "level", "post_location"])
    diff = vqa[vqa["question_type"] == "difference"]
    n_diff = len(diff)
    pair_id = diff["study_id"].astype("int64").astype(str) + "_" + diff["ref_id"].astype("int64").astype(str)
    dup = pair_id.duplicated(keep="first").to_numpy()
    for pid in pair_id[dup]:
        ledger.set_aside("pair", pid, "duplicate difference row for the pair (first kept)")
    diff = diff[~dup]
    pair_id = pair_id[~dup]
    ledger.count("difference_rows", n_diff, len(diff), "one difference row per (study_id, ref_id)")

    keyinfo = keyinfo_lookup(diseases) if settings.get("use_keyinfo", True) else {}
    questions = question_lookup(vqa) if settings.get("use_questions", True) else {}
    rows, pending = [], []
    for pid, subj, cur, past, split, ans in zip(pair_id.to_numpy(), diff["subject_id"].to_numpy(),
                                                 diff["study_id"].to_numpy(), diff["ref_id"].to_numpy(),
                                                 diff["split"].to_numpy(), diff["answer"].to_numpy()):
        cur, past = int(cur), int(past)
        row = {"pair_id": str(pid), "subject_id": int(subj), "current_study_id": cur, "past_study_id": past,
               "vqa_split": str(split), "answer": str(ans), "status": "ok", "reason": "", "operations": [],
               "n_ops": 0, "instruction": None}
        try:
            names = _change_names(ans)
            ops = parse_difference(ans, level_hints(keyinfo, names, cur, past) if names else None)
        except UnparseableAnswer as err:
            row.update(status="unparseable", reason=err.reason)
            ledger.set_aside("pair", pid, f"unparseable difference answer: {err.reason}", ans)
            rows.append(row)
            continue
        if not ops:
            row.update(status="no_operation", reason="nothing has changed")
            ledger.set_aside("pair", pid, "no operation (nothing has changed)", ans)
            rows.append(row)
            continue
        ops = attach_attributes(ops, cur, past, keyinfo, questions)
        row["_ops"] = ops
        rows.append(row)
        if settings.get("use_reports", True) and any(_needs_report(o) for o in ops):
            pending.append(len(rows) - 1)

    if pending:
        reports = _read(reports_path, ["study_id", "text"])
        text_of = dict(zip(reports["study_id"].astype("int64").to_numpy(), reports["text"].to_numpy()))
        needed, wanted = {}, {}
        for i in pending:
            r = rows[i]
            for o in r["_ops"]:
                if not _needs_report(o):
                    continue
                s = r["past_study_id"] if o.op == "remove" else r["current_study_id"]
                if s in text_of:
                    needed[s] = text_of[s]
                    wanted.setdefault(s, set()).add(o.finding)
        extractor = ReportExtractor()
        extractor.extract_all(dict(sorted(needed.items())), wanted)
        for i in pending:
            r = rows[i]
            r["_ops"] = attach_attributes(r["_ops"], r["current_study_id"], r["past_study_id"], {}, {}, extractor)
        log.info("report extraction on %d studies for %d pairs", len(needed), len(pending))

    for r in rows:
        ops = r.pop("_ops", None)
        if ops:
            r["operations"] = operations_records(ops)
            r["n_ops"] = len(ops)
            r["instruction"] = render_instruction(ops)
    cols = [c["name"] for c in load_schema("instruction_operations")["columns"]]
    df = pd.DataFrame(rows, columns=cols)
    df = df.astype({"subject_id": "int64", "current_study_id": "int64", "past_study_id": "int64", "n_ops": "int64"})
    n_ok = int((df["status"] == "ok").sum())
    ledger.count("parse_answers", len(df), n_ok + int((df["status"] == "no_operation").sum()), "unparseable answers set aside")
    ledger.count("with_operation", len(df), n_ok, "pairs with at least one operation")
    write_table(df, load_schema("instruction_operations"), out_path)
    ledger.write(ledger_path, counts_path)
    return df


def _needs_report(o) -> bool:
    """A location, a severity (add/remove) or a more precise place than a bare side is missing."""
    bare_side = o.location in ("left", "right") and o.sources.get("location") == "question"
    return o.location is None or bare_side or (o.op != "change" and o.severity is None)


def _change_names(answer) -> list[str]:
    if not isinstance(answer, str) or "the level of " not in answer:
        return []
    import re

    return re.findall(r"the level of ([a-z][a-z \-]*?) has changed from", answer)


def build_instructions(operations_path, accepted_path, studies_path, out_path, table1_csv, table1_md,
                       ledger_path, counts_path, split_settings: dict, seed: int, pairs_path=None,
                       results_dir=None) -> pd.DataFrame:
    """Join parsed operations with the accepted pairs; patient-wise splits (``splits.assign_splits``:
    by a hash of subject_id and seed, so a gate change moves no patient); Table 1.

    ``pairs_path`` (``pairs/pairs.parquet``, optional) supplies the image ids and the chronology flag
    when the accepted-pairs table does not carry them. Image paths are written relative to the results
    directory (``results_dir``, else the accepted table's own, ``core.paths``)."""
    ledger = Ledger(f"{STAGE}_join")
    ops = _read(operations_path, ["pair_id", "subject_id", "current_study_id", "past_study_id", "status",
                                  "operations", "n_ops", "instruction"])
    acc = read_parquet(accepted_path)
    require_columns(acc, accepted_path, ["pair_id", "aligned_current_path", "past_path"])
    ok = ops[ops["status"] == "ok"]
    merged = ok.merge(acc.drop(columns=[c for c in ("subject_id", "current_study_id", "past_study_id")
                                        if c in acc.columns]), on="pair_id", how="inner", validate="one_to_one")
    for pid in sorted(set(ok["pair_id"]) - set(merged["pair_id"])):
        ledger.set_aside("pair", pid, "not among the registration gate's accepted pairs")
    for pid in sorted(set(acc["pair_id"]) - set(ok["pair_id"])):
        ledger.set_aside("pair", pid, "accepted by registration but has no parsed operation")
    ledger.count("join_accepted", len(ok), len(merged), "pairs with operations and accepted registration")
    if pairs_path is not None:
        extra = [c for c in ("current_dicom_id", "past_dicom_id", "chronological") if c not in merged.columns]
        if extra:
            pairs = _read(pairs_path, ["pair_id", *extra])
            merged = merged.merge(pairs[["pair_id", *extra]].drop_duplicates("pair_id"), on="pair_id", how="left")

    if "chronological" in merged.columns:
        chrono = merged["chronological"].fillna(True).astype(bool)
    else:
        studies = _read(studies_path, ["study_id", "StudyDate"])
        date = dict(zip(studies["study_id"].astype("int64"), studies["StudyDate"]))
        chrono = pd.Series([bool(pd.isna(date.get(p)) or pd.isna(date.get(c)) or date.get(p) <= date.get(c))
                            for p, c in zip(merged["past_study_id"], merged["current_study_id"])],
                           index=merged.index, dtype=bool)
    mapping = assign_splits(merged["subject_id"], split_settings.get("fractions", {}), seed,
                            split_settings.get("holdout_folder", "p19"))
    out = pd.DataFrame({
        "pair_id": merged["pair_id"].astype(str),
        "subject_id": merged["subject_id"].astype("int64"),
        "current_study_id": merged["current_study_id"].astype("int64"),
        "past_study_id": merged["past_study_id"].astype("int64"),
        "current_dicom_id": _opt_str(merged, "current_dicom_id"),
        "past_dicom_id": _opt_str(merged, "past_dicom_id"),
        "split": merged["subject_id"].astype("int64").map(mapping).astype(str),
        "chronological": chrono.to_numpy(dtype=bool),
        "mi": merged["mi"].astype("float64") if "mi" in merged.columns else np.full(len(merged), np.nan),
        "past_image": merged["past_path"].astype(str),
        "current_image": merged["aligned_current_path"].astype(str),
        "instruction": merged["instruction"].astype(str),
        "operations": pd.Series([_records(v) for v in merged["operations"]], index=merged.index, dtype=object),
        "n_ops": merged["n_ops"].astype("int64"),
    }).sort_values("pair_id", kind="stable").reset_index(drop=True)
    root = results_dir if results_dir is not None else table_results_dir(accepted_path)
    table, meta = relativise(out, ["past_image", "current_image"], root, out_path)
    write_table(table, load_schema("instructions"), out_path, metadata=meta)
    t = table1(out)
    with open(Path(table1_csv).with_name(f".{Path(table1_csv).name}.tmp"), "w") as fh:
        t.to_csv(fh, index=False)
    os.replace(Path(table1_csv).with_name(f".{Path(table1_csv).name}.tmp"), table1_csv)
    write_text(to_markdown(t), table1_md)
    ledger.write(ledger_path, counts_path)
    return out


def _records(value) -> list[dict]:
    """A parquet ``operations`` cell (list of structs, or legacy JSON text) as a list of plain dicts."""
    return operations_records(operations_from_json(value))


def _opt_str(df, col):
    if col not in df.columns:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    return df[col].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))


# our split -> (dataset folder under the export, split name the authors' loader reads)
AUTHORS_SPLITS = {"train": (".", "train"), "val": (".", "val"), "test": (".", "test"), "holdout": ("holdout", "test")}
AUTHORS_COLUMNS = ["split", "current_dicom_id", "past_dicom_id", "instruction"]


def export_authors_layout(instructions_path, out_dir) -> dict:
    """The authors' training layout (data-contract §8; ``x2x_dataset.EditDataset(path, split)`` opens
    ``<path>/current/<current_dicom_id>`` and ``<path>/past/<past_dicom_id>`` and keeps the rows whose
    ``split`` equals its ``split`` argument, ``train``/``val``/``test``):

    - ``OUT/instructions.csv`` (split,current_dicom_id,past_dicom_id,instruction) with our train/val/test
      rows, ``OUT/past/<dicom_id>`` and ``OUT/current/<dicom_id>``;
    - ``OUT/holdout/`` the same layout for the p19 holdout cohort, its rows with split ``test`` (a name
      their loader accepts: ``EditDatasetEval("OUT/holdout", split="test")``);
    - ``OUT/README.md``: the mapping, the counts, and the rows left out (``OUT/excluded.csv`` with reasons).

    The id columns hold the real MIMIC-CXR ``dicom_id``s and each image file is named exactly by its
    id (no extension: the loader opens the column value as the file name; the content is PNG, which PIL
    recognises). The current image is the registered (aligned) one, so a current ``dicom_id`` registered
    onto two different past images cannot be named by its id twice: the second pair is excluded, as is
    a pair without ids. Files are hard links where possible. Returns the counts per exported split."""
    df = read_parquet(instructions_path)
    out = Path(out_dir)
    rows: dict[str, list] = {}
    excluded = []
    used: dict[tuple, str] = {}  # (folder, sub, dicom_id) -> source file
    for r in df.sort_values("pair_id", kind="stable").itertuples(index=False):
        folder, split = AUTHORS_SPLITS.get(str(r.split), (None, None))
        ids = {"past": r.past_dicom_id, "current": r.current_dicom_id}
        if folder is None:
            excluded.append((r.pair_id, r.split, "unknown split", f"split {r.split!r} has no place in the authors' layout"))
            continue
        if any(v is None or (isinstance(v, float) and v != v) or not str(v) for v in ids.values()):
            excluded.append((r.pair_id, r.split, "no dicom_id", "no dicom_id for the past or current image"))
            continue
        clash = None
        for sub, src in (("past", r.past_image), ("current", r.current_image)):
            prev = used.get((folder, sub, str(ids[sub])))
            if prev is not None and prev != src and not _same_bytes(prev, src):
                clash = f"{sub} dicom_id {ids[sub]} already exported with another {sub} image (pair registered twice)"
        if clash:
            excluded.append((r.pair_id, r.split, "dicom_id clash", clash))
            continue
        for sub, src in (("past", r.past_image), ("current", r.current_image)):
            key = (folder, sub, str(ids[sub]))
            if key in used:
                continue
            dst = out / folder / sub / str(ids[sub])
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                dst.unlink()
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
            used[key] = src
        rows.setdefault(folder, []).append({"split": split, "current_dicom_id": str(ids["current"]),
                                            "past_dicom_id": str(ids["past"]), "instruction": r.instruction})
    counts = {}
    for folder in sorted({f for f, _ in AUTHORS_SPLITS.values()}):
        table = pd.DataFrame(rows.get(folder, []), columns=AUTHORS_COLUMNS)
        (out / folder).mkdir(parents=True, exist_ok=True)
        write_text(table.to_csv(index=False), out / folder / "instructions.csv")
        for split, n in table["split"].value_counts().sort_index().items():
            counts[f"{folder}/{split}" if folder != "." else split] = int(n)
    ex = pd.DataFrame(excluded, columns=["pair_id", "split", "kind", "reason"])
    write_text(ex.to_csv(index=False), out / "excluded.csv")
    write_text(_authors_readme(counts, ex), out / "README.md")
    return counts


def _same_bytes(a, b) -> bool:
    try:
        return Path(a).read_bytes() == Path(b).read_bytes()
    except OSError:
        return False


def _authors_readme(counts: dict, excluded: pd.DataFrame) -> str:
    lines = [
        "# MIMIC-EDIT-INSTRUCTION in the authors' layout",
        "",
        "Written by `instructx2x` (rule `instructions_export`, `instructions.build.export_authors_layout`) for the",
        "authors' loader `x2x_dataset.EditDataset(path, split)` (repository hgminn/InstructX2X), which reads",
        "`<path>/instructions.csv` (columns `split,current_dicom_id,past_dicom_id,instruction`), keeps the rows",
        "whose `split` equals its `split` argument and opens `<path>/current/<current_dicom_id>` and",
        "`<path>/past/<past_dicom_id>`.",
        "",
        "- Id columns hold the real MIMIC-CXR `dicom_id`s; each image file is named exactly by its id (no",
        "  extension; PNG content, which PIL recognises). `current/` holds the current image registered onto",
        "  the past one, `past/` the past image, both at the pipeline's working resolution.",
        "- Splits (patient-wise; `instructions/instructions.parquet` has ours):",
        "",
        "| our split | dataset path | `split` value | rows |",
        "|---|---|---|---|",
    ]
    for ours, (folder, theirs) in AUTHORS_SPLITS.items():
        key = theirs if folder == "." else f"{folder}/{theirs}"
        where = "`.`" if folder == "." else f"`{folder}/`"
        lines.append(f"| {ours} | {where} | `{theirs}` | {counts.get(key, 0)} |")
    lines += [
        "",
        "The p19 holdout cohort is a dataset of its own in `holdout/`, with split `test`, because the loader",
        "and its configs know only `train`, `val` and `test`: evaluate it with",
        '`EditDatasetEval("<this folder>/holdout", split="test")` (or `EditDataset(..., split="test")`).',
        "",
        f"Rows left out: {len(excluded)} (`excluded.csv`, with the reason of each)"
        + (": " + ", ".join(f"{k}: {v}" for k, v in excluded["kind"].value_counts().sort_index().items())
           if len(excluded) else "."),
        "",
    ]
    return "\n".join(lines)


def load_operations(text):
    """Operations of one row's ``operations`` column (a list of structs, or legacy JSON text)."""
    return operations_from_json(text)
