"""Rule ``infer``: edit every test/holdout pair in both modes (RSE and wo-RSE), sharded.

Each shard job loads the model once and edits its pairs (row ``i`` of the selected instructions
goes to shard ``i % n_shards``) in every mode, writing per pair the edited image, guidance map
(float ``.npy`` and an 8-bit PNG), binary mask, overlay, and one record row; the rows of a shard
go to ``inference/<mode>/shard_<i>.parquet``. ``merge_records`` joins the shards into
``inference/records.parquet`` and writes the stage ledger (pairs that could not be edited).

A pair's seed depends only on the config and its ``pair_id`` (not on its shard), and is the same
in both modes, so the ablation compares the same noise.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.io import write_parquet
from instructx2x.core.paths import read_parquet, relativise, table_results_dir

log = logging.getLogger(__name__)

INSTRUCTION_COLUMNS = ("pair_id", "split", "past_image", "instruction", "operations")
RECORD_COLUMNS = (
    "pair_id", "subject_id", "split", "mode", "status", "reason", "input_path", "target_path", "edited_path",
    "guidance_path", "guidance_png_path", "mask_path", "overlay_path", "mask_source", "mask_detail", "fallback",
    "categories", "relevance_constant", "edited_fraction", "instruction", "operations", "seed", "steps", "tau",
    "t_rel", "image_guidance_scale", "guidance_scale",
)


PATH_COLUMNS = ("input_path", "target_path", "edited_path", "guidance_path", "guidance_png_path", "mask_path",
                "overlay_path")


def _relative(df, results_dir, out_path):
    """(table, path, metadata) for write_parquet: file paths relative to the results directory (core.paths)."""
    table, meta = relativise(df, PATH_COLUMNS, results_dir, out_path)
    return table, out_path, meta


def operations_text(value) -> str:
    from instructx2x.instructions.operation import operations_text as text

    return text(value)


def load_operation_dicts(value) -> list[dict]:
    from instructx2x.instructions.operation import load_operation_dicts as dicts

    return dicts(value)


def pair_seed(pair_id: str, seed: int, offset: int = 0) -> int:
    return (int(seed) + int(offset) + zlib.crc32(str(pair_id).encode())) % (2**31 - 1)


def read_instructions(path, splits) -> pd.DataFrame:
    """The pairs to edit, in a fixed order; fails at once naming a missing column."""
    df = read_parquet(path)  # image paths resolved against the results directory (core.paths)
    missing = [c for c in INSTRUCTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(INSTRUCTION_COLUMNS)} (docs/interfaces.md)")
    df = df[df["split"].isin(list(splits))]
    return df.sort_values("pair_id", kind="stable").reset_index(drop=True)


def shard_rows(df: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    return df.iloc[[i for i in range(len(df)) if i % n_shards == shard]].reset_index(drop=True)


def _record(row, mode, **extra) -> dict:
    rec = {c: None for c in RECORD_COLUMNS}
    rec.update(
        pair_id=str(row["pair_id"]),
        subject_id=int(row["subject_id"]) if "subject_id" in row and pd.notna(row["subject_id"]) else None,
        split=str(row["split"]),
        mode=mode,
        input_path=str(row["past_image"]),
        target_path=str(row["current_image"]) if "current_image" in row and pd.notna(row["current_image"]) else None,
        instruction=str(row["instruction"]),
        operations=operations_text(row["operations"]),
    )
    rec.update(extra)
    return rec


def _typed(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(records, columns=list(RECORD_COLUMNS))
    for col in ("fallback", "relevance_constant"):
        df[col] = df[col].astype("boolean")
    for col in ("edited_fraction", "tau", "image_guidance_scale", "guidance_scale"):
        df[col] = df[col].astype("float64")
    for col in ("seed", "steps", "t_rel", "subject_id"):
        df[col] = df[col].astype("Int64")
    for col in set(RECORD_COLUMNS) - {"fallback", "relevance_constant", "edited_fraction", "tau",
                                      "image_guidance_scale", "guidance_scale", "seed", "steps", "t_rel", "subject_id"}:
        df[col] = df[col].astype("string")
    return df


def run_shard(instructions_path, model_dir, masks_path, out_paths: dict, images_dir, shard: int, n_shards: int,
              rse_cfg: dict, masks_cfg: dict, seed: int, splits=("test", "holdout"), threads: int = 1,
              device: str = "cpu") -> dict:
    """Edit one shard of the pairs in every mode of ``out_paths`` ({mode: shard parquet path})."""
    import torch

    from instructx2x.masks import PseudoMasks
    from instructx2x.core.images import read_gray
    from instructx2x.inference.rse import RegionSpecificEditPipeline, save_edit

    torch.set_num_threads(int(threads))
    df = shard_rows(read_instructions(instructions_path, splits), shard, n_shards)
    region = {k: masks_cfg[k] for k in ("restrict_laterality", "restrict_zone", "patient_left_on_image", "midline", "zones")
              if k in masks_cfg}
    pipe = RegionSpecificEditPipeline.from_pretrained(model_dir, pseudo_masks=PseudoMasks.load(masks_path),
                                                      region_settings=region, device=device)
    kwargs = {k: rse_cfg[k] for k in ("steps", "image_guidance_scale", "guidance_scale", "tau", "t_rel")}
    kwargs["decode"] = rse_cfg.get("decode", "plain")
    records = {mode: [] for mode in out_paths}
    t0 = time.time()
    for i, row in df.iterrows():
        s = pair_seed(row["pair_id"], seed, rse_cfg.get("seed_offset", 0))
        try:
            image = read_gray(row["past_image"])
            operations = load_operation_dicts(row["operations"])
        except Exception as err:  # a bad item: set aside, the run goes on
            for mode in out_paths:
                records[mode].append(_record(row, mode, status="failed", reason=f"unreadable input: {err}", seed=s))
            continue
        for mode in out_paths:
            try:
                out = pipe(image, str(row["instruction"]), operations=operations, seed=s, rse=(mode == "rse"), **kwargs)
            except ValueError as err:
                records[mode].append(_record(row, mode, status="failed", reason=str(err), seed=s))
                continue
            rec = save_edit(out, Path(images_dir) / mode, stem=str(row["pair_id"]))
            records[mode].append(_record(
                row, mode, status="ok", reason="",
                **{k: rec[k] for k in ("edited_path", "guidance_path", "guidance_png_path", "mask_path", "overlay_path",
                                       "mask_source", "mask_detail", "fallback", "relevance_constant", "edited_fraction",
                                       "seed", "steps", "tau", "t_rel", "image_guidance_scale", "guidance_scale")},
                categories=json.dumps(rec["categories"]),
            ))
        log.info("shard %d: %d/%d pairs (%.1f s)", shard, i + 1, len(df), time.time() - t0)
    root = table_results_dir(instructions_path)
    for mode, path in out_paths.items():
        write_parquet(*_relative(_typed(records[mode]), root, path))
    return {mode: len(r) for mode, r in records.items()}


def merge_records(shard_paths, out_path, ledger_path, counts_path) -> pd.DataFrame:
    """Join the shard tables into ``records.parquet``; failed pairs go to the ledger."""
    from instructx2x.core.ledger import Ledger

    df = pd.concat([read_parquet(p) for p in shard_paths], ignore_index=True)
    df = df.sort_values(["mode", "pair_id"], kind="stable").reset_index(drop=True)
    ledger = Ledger("inference")
    for mode, sub in df.groupby("mode", sort=True):
        failed = sub[sub["status"] != "ok"]
        for row in failed.itertuples(index=False):
            ledger.set_aside("pair", f"{row.pair_id}:{mode}", "edit_failed", row.reason)
        ledger.count(f"edit_{mode}", len(sub), len(sub) - len(failed), "pairs edited")
        ok_rows = sub[sub["status"] == "ok"]
        n_fallback = int(ok_rows["fallback"].fillna(False).astype(bool).sum())
        if mode == "rse":
            ledger.count("rse_region_from_masks", len(ok_rows), len(ok_rows) - n_fallback,
                         "edits confined to a pseudo/user mask; the rest fell back to the full image (records.mask_detail)")
    ok = df[df["status"] == "ok"].reset_index(drop=True)
    write_parquet(*_relative(ok, table_results_dir(shard_paths[0]) if len(shard_paths) else None, out_path))
    ledger.write(ledger_path, counts_path)
    return ok
