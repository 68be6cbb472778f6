"""The registration stage over all pairs: shards, gather, gate and fates (the QA montage: ``montage.py``).

- ``register_shard``: the pairs whose ``shard_of(pair_id)`` is ``shard`` (CRC32 of the id, so
  a pair's shard does not depend on the other pairs); one job per shard. Writes the past image
  at the working resolution and the current image resampled into the past frame (unfiltered)
  as PNGs, and one row per pair. An unreadable image or a failing registration gives a row with
  ``status = failed`` and its reason; the shard goes on.
- ``gather``: the shard tables concatenated (sorted by ``pair_id``) → ``registration.parquet``.
- ``apply_gate``: the cheap decision (MI gate, mirror check, wrong-patient check: ``ncc`` and
  ``structure_ncc``) →
  ``accepted_pairs.parquet`` and ``pair_fates.parquet`` (every Diff-VQA pair and its fate,
  including those set aside by the pairs stage), with ledger and counts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.io import write_parquet
from instructx2x.core.paths import read_parquet, relativise, table_results_dir
from instructx2x.core.ledger import Ledger, read_ledger
from instructx2x.core.images import UnreadableImage
from instructx2x.registration.algorithm import RegistrationSettings, UnusableImage, register_files, save_png, shard_of
from instructx2x.registration.gate import GateSettings, gate_flag, gate_reason
from instructx2x.views.tables import require_columns

log = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "pair_id", "shard", "status", "mi", "angle_rad", "scale", "tx", "ty", "center_x", "center_y",
    "mirror_mi", "ncc", "structure_ncc", "resolution", "aligned_current_path", "past_path", "reason",
]
FLOAT_COLUMNS = ["mi", "angle_rad", "scale", "tx", "ty", "center_x", "center_y", "mirror_mi", "ncc", "structure_ncc"]


IMAGE_COLUMNS = ("aligned_current_path", "past_path")


def _relative(df, results_dir, out_path):
    """(table, path, metadata) for write_parquet: image paths relative to the results directory."""
    table, meta = relativise(df, IMAGE_COLUMNS, results_dir, out_path)
    return table, out_path, meta


def _empty_row(pair_id, shard, resolution, reason):
    row = {c: np.nan for c in FLOAT_COLUMNS}
    row.update(pair_id=pair_id, shard=shard, status="failed", resolution=resolution,
               aligned_current_path="", past_path="", reason=reason)
    return row


def register_shard(pairs_path, shard: int, shards: int, settings: RegistrationSettings, images_dir, out_path,
                   results_dir=None) -> pd.DataFrame:
    pairs = pd.read_parquet(pairs_path)
    require_columns(pairs, ("pair_id", "current_image_path", "past_image_path"), pairs_path)
    mine = pairs[[shard_of(p, shards) == shard for p in pairs["pair_id"]]].sort_values("pair_id")
    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(mine.itertuples(index=False)):
        try:
            res, past, aligned = register_files(r.past_image_path, r.current_image_path, settings)
        except UnreadableImage as exc:
            rows.append(_empty_row(r.pair_id, shard, settings.resolution, f"unreadable image: {exc}"))
            log.warning("%s: unreadable image: %s", r.pair_id, exc)
            continue
        except UnusableImage as exc:
            rows.append(_empty_row(r.pair_id, shard, settings.resolution, f"unusable image: {exc}"))
            log.warning("%s: unusable image: %s", r.pair_id, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a failed registration is set aside, the shard goes on
            rows.append(_empty_row(r.pair_id, shard, settings.resolution, f"registration failed: {type(exc).__name__}: {exc}"))
            log.warning("%s: registration failed: %s", r.pair_id, exc)
            continue
        past_png = images_dir / f"{r.pair_id}_past.png"
        cur_png = images_dir / f"{r.pair_id}_current_aligned.png"
        save_png(past, past_png)
        save_png(aligned, cur_png)
        row = res.as_dict()
        row.update(pair_id=r.pair_id, shard=shard, status="ok", resolution=settings.resolution,
                   aligned_current_path=str(past_png.parent.resolve() / cur_png.name),
                   past_path=str(past_png.resolve()), reason="")
        rows.append(row)
        log.info("[%d/%d] %s mi=%.3f mirror_mi=%.3f ncc=%.3f", i + 1, len(mine), r.pair_id, res.mi, res.mirror_mi, res.ncc)
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    out[FLOAT_COLUMNS] = out[FLOAT_COLUMNS].astype("float64")
    out["shard"] = out["shard"].astype("int64")
    out["resolution"] = out["resolution"].astype("int64")
    table, meta = relativise(out, IMAGE_COLUMNS, results_dir, out_path)  # paths relative to the results dir
    write_parquet(table, out_path, metadata=meta)
    return out


def gather(shard_paths, out_path, *, ledger_path=None, counts_path=None) -> pd.DataFrame:
    parts = [read_parquet(p) for p in shard_paths]
    for p, df in zip(shard_paths, parts):
        require_columns(df, RESULT_COLUMNS, p)
    df = pd.concat(parts, ignore_index=True).sort_values("pair_id", kind="stable").reset_index(drop=True)
    if df["pair_id"].duplicated().any():
        raise ValueError(f"pair_id appears in several shards: {df.loc[df['pair_id'].duplicated(), 'pair_id'].tolist()[:5]}")
    root = table_results_dir(shard_paths[0]) if len(shard_paths) else None
    write_parquet(*_relative(df, root, out_path))
    ledger = Ledger("registration")
    for r in df[df["status"] != "ok"].itertuples(index=False):
        reason, _, detail = r.reason.partition(": ")
        ledger.set_aside("pair", r.pair_id, reason, detail)
    ledger.count("registered", len(df), int((df["status"] == "ok").sum()), "unreadable images / failed registrations set aside")
    if ledger_path:
        ledger.write(ledger_path, counts_path)
    return df


def apply_gate(registration_path, pairs_ledger_path, accepted_path, fates_path, gate: GateSettings, *, ledger_path=None, counts_path=None) -> pd.DataFrame:
    """The gate over all registered pairs. With ``same_patient_action: flag`` a pair failing the
    same-patient check is kept: ``gate_flag`` in ``accepted_pairs.parquet``, a ledger line
    ``flagged: wrong patient suspected`` and its fate's detail say so."""
    reg = read_parquet(registration_path)
    require_columns(reg, RESULT_COLUMNS, registration_path)
    records = reg.to_dict("records")
    reg["gate_reason"] = [gate_reason(r, gate) for r in records]
    reg["gate_flag"] = [gate_flag(r, gate) if r["status"] == "ok" else "" for r in records]
    accepted = reg[reg["gate_reason"] == ""].drop(columns=["gate_reason"])
    write_parquet(*_relative(accepted, table_results_dir(registration_path), accepted_path))

    ledger = Ledger("registration_gate")
    ok = reg[reg["status"] == "ok"]
    for r in ok[ok["gate_reason"] != ""].itertuples(index=False):
        ledger.set_aside("pair", r.pair_id, r.gate_reason, _detail(r))
    for r in accepted[accepted["gate_flag"] != ""].itertuples(index=False):
        ledger.set_aside("pair", r.pair_id, f"flagged: {r.gate_flag}", "kept (registration.same_patient_action: flag); " + _detail(r))
    n = len(ok)
    after_mi = ok[ok["gate_reason"] != "mi gate"]
    after_mirror = after_mi[after_mi["gate_reason"] != "mirror suspected"]
    ledger.count("mi gate", n, len(after_mi), f"mi <= {gate.mi_threshold}")
    ledger.count("mirror check", len(after_mi), len(after_mirror), f"mirror_mi >= mi - {gate.mirror_margin}")
    n_flagged = int((accepted["gate_flag"] != "").sum())
    ledger.count("same-patient check", len(after_mirror), len(accepted),
                 f"ncc >= {gate.ncc_min} and structure_ncc >= {gate.structure_ncc_min}"
                 + (f"; action flag: {n_flagged} kept and flagged" if gate.same_patient_action == "flag" else ""))
    if ledger_path:
        ledger.write(ledger_path, counts_path)

    fates = [{"pair_id": r["item_id"], "stage": "pairs", "fate": r["reason"], "detail": r["detail"]}
             for r in (read_ledger(pairs_ledger_path) if pairs_ledger_path else [])]
    for r in reg.itertuples(index=False):
        if r.status != "ok":
            reason, _, detail = r.reason.partition(": ")
            fates.append({"pair_id": r.pair_id, "stage": "registration", "fate": reason, "detail": detail})
        else:
            fates.append({"pair_id": r.pair_id, "stage": "registration_gate", "fate": r.gate_reason or "kept",
                          "detail": (f"flagged: {r.gate_flag}; " if r.gate_flag else "") + _detail(r)})
    fates_df = pd.DataFrame(fates, columns=["pair_id", "stage", "fate", "detail"]).sort_values("pair_id", kind="stable")
    write_parquet(fates_df, fates_path)
    return fates_df


def _detail(r) -> str:
    return f"mi={r.mi:.4f} mirror_mi={r.mirror_mi:.4f} ncc={r.ncc:.4f} structure_ncc={r.structure_ncc:.4f}"
