"""The evaluation stage: score the four Table 2 rows on the same pairs and write ``metrics.json``.

Rows (method.md §10): ``real`` (the real current image = target, the ceiling), ``input`` (the
unedited past image, the floor), ``wo_rse`` and ``rse`` (the edited images of each mode from
``inference/records.parquet``). Only pairs edited successfully in every mode present, with
readable images, are scored, so every row is computed on the same pairs; the others are set aside
in the ledger with the reason. Within a row a pair without a race / age / finding label is left
out of that metric only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.evaluation import edit_success as ES
from instructx2x.evaluation import metrics as M
from instructx2x.evaluation.evaluators import load_evaluator
from instructx2x.evaluation.labels import FINDINGS, RACES, pair_targets
from instructx2x.core.errors import InputError
from instructx2x.core.io import read_input_table, write_json, write_parquet
from instructx2x.core.ledger import Ledger

log = logging.getLogger(__name__)
ROWS = ("real", "input", "wo_rse", "rse")
RECORD_COLUMNS = ("pair_id", "subject_id", "mode", "status", "input_path", "target_path", "edited_path")


def _check_records(records: pd.DataFrame, path) -> None:
    absent = [c for c in RECORD_COLUMNS if c not in records.columns]
    if absent:
        raise InputError(f"{path}: missing column(s) {absent}; expected the inference records of docs/interfaces.md")
    bad = sorted(set(records["mode"]) - {"rse", "wo_rse"})
    if bad:
        raise InputError(f"{path}: column 'mode' has {bad}; expected rse or wo_rse")


def row_images(records: pd.DataFrame, ledger: Ledger) -> pd.DataFrame:
    """One row per scorable pair: ``pair_id, subject_id, real, input, wo_rse, rse`` (image paths; a mode absent from
    the records gives a column of None)."""
    from instructx2x.core.images import UnreadableImage, read_gray

    ok = records[records["status"] == "ok"]
    for r in records[records["status"] != "ok"].itertuples():
        ledger.set_aside("pair", r.pair_id, f"edit {r.mode} not ok", str(getattr(r, "reason", "")))
    modes = sorted(set(records["mode"]))
    n_all = records["pair_id"].nunique()
    complete = ok.groupby("pair_id")["mode"].nunique()
    keep = sorted(complete[complete == len(modes)].index)
    for pid in sorted(set(records["pair_id"]) - set(keep)):
        ledger.set_aside("pair", pid, "not edited in every mode", ",".join(modes))
    ledger.count("edited in every mode", n_all, len(keep), ",".join(modes))
    ok = ok[ok["pair_id"].isin(keep)].sort_values(["pair_id", "mode"], kind="stable")
    first = ok.drop_duplicates("pair_id").set_index("pair_id")
    df = pd.DataFrame({"pair_id": keep})
    df["subject_id"] = first.loc[keep, "subject_id"].to_numpy()
    df["real"] = first.loc[keep, "target_path"].to_numpy()
    df["input"] = first.loc[keep, "input_path"].to_numpy()
    for mode in ("wo_rse", "rse"):
        m = ok[ok["mode"] == mode].set_index("pair_id")
        df[mode] = m.loc[keep, "edited_path"].to_numpy() if mode in modes else None
    readable = []
    for r in df.itertuples(index=False):
        bad = None
        for row in ROWS:
            p = getattr(r, row)
            if p is None:
                continue
            try:
                read_gray(p)
            except UnreadableImage as exc:
                bad = f"{row}: {exc}"
                break
        if bad:
            ledger.set_aside("pair", r.pair_id, "unreadable image", bad)
        readable.append(bad is None)
    out = df[np.array(readable, dtype=bool)].reset_index(drop=True)
    ledger.count("images readable", len(df), len(out))
    return out


def _pairs_by_split(records: pd.DataFrame, images: pd.DataFrame) -> dict | None:
    if "split" not in records.columns:
        return None
    split_of = records.drop_duplicates("pair_id").set_index("pair_id")["split"]
    counts = split_of.reindex(images["pair_id"]).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def edit_success(records: pd.DataFrame, predictions: pd.DataFrame, n_boot: int, seed: int) -> dict | None:
    """The edit-success measures of ``evaluation.edit_success`` on the evaluated pairs."""
    from instructx2x.core.images import read_gray

    if predictions.empty or records.empty:
        return None
    dist = ES.pair_distances(records, lambda p: read_gray(p, check_content=False))
    dirs = ES.operation_directions(records, predictions)
    out = ES.summarize(dist, dirs, n_boot=n_boot, seed=seed)
    out["definitions"] = {
        "ratio": "per pair: mean |edit - target| / mean |input - target| (grey levels), inside the RSE edit mask "
                 "for rse, over the whole image for wo_rse; < 1 means the edit is closer to the target",
        "share_closer": "share of pairs with ratio < 1",
        "share_moved_as_instructed": "share of Add/Remove operations on the evaluator's five findings whose "
                                     "predicted probability moves up (Add) or down (Remove) from input to edit",
        "intervals": f"bootstrap 95% percentile intervals over pairs / operations ({n_boot} resamples)",
    }
    out["pairs"] = dist.round(4).to_dict(orient="records")
    return out


def evaluate(records_path, studies_path, patients_path, admissions_path, *, out_metrics, out_predictions, ledger_path,
             counts_path, backend: str = "trained", weights_dir=None, model_path=None, evaluator_info_path=None,
             uncertain: str = "zero", missing: str = "zero", race_rule: str = "consistent", n_boot: int = 200,
             seed: int = 0, batch_size: int = 16, splits=None) -> dict:
    ledger = Ledger("evaluation")
    records = read_input_table(records_path, what="inference records (records.parquet of docs/interfaces.md)")
    _check_records(records, records_path)
    if splits is not None and "split" in records.columns:
        n = records["pair_id"].nunique()
        records = records[records["split"].isin(list(splits))]
        ledger.count("pairs of the evaluated splits", n, records["pair_id"].nunique(), ",".join(splits))
    images = row_images(records, ledger)
    tables = [read_input_table(p, what=f"the ingest table {Path(p).name}") for p in (studies_path, patients_path, admissions_path)]
    targets_df = pair_targets(images[["pair_id", "subject_id"]], *tables, uncertain=uncertain, missing=missing,
                              race_rule=race_rule, ledger=ledger)
    images = images.merge(targets_df[["pair_id"]], on="pair_id")
    targets = {
        "labels": targets_df[list(FINDINGS)].to_numpy(dtype="float64"),
        "race_idx": np.array([RACES.index(r) if isinstance(r, str) else -1 for r in targets_df["race"]]),
        "age": targets_df["age"].to_numpy(dtype="float64"),
    }
    evaluator = load_evaluator(backend, weights_dir=weights_dir, model_path=model_path, batch_size=batch_size)
    preds, pred_rows = {}, []
    for row in ROWS:
        if images[row].isna().any() or len(images) == 0:
            continue
        preds[row] = evaluator.predict(images[row])
        t = pd.DataFrame({"pair_id": images["pair_id"], "row": row, "image_path": images[row]})
        for i, f in enumerate(FINDINGS):
            t[f"p_{f}"] = preds[row]["patho"][:, i]
        for i, g in enumerate(RACES):
            t[f"p_race_{g}"] = preds[row]["race"][:, i]
        t["age_pred"] = preds[row]["age"]
        pred_rows.append(t)
    rows, boot_samples = {}, {}
    for k, row in enumerate(ROWS):
        if row not in preds:
            rows[row] = None
            continue
        m = M.row_metrics(targets, preds[row], preds["real"], FINDINGS)
        boot_samples[row] = {}
        # the same seed for every row: the same resampled pairs, so row differences are paired
        m["intervals"] = M.bootstrap_intervals(targets, preds[row], preds["real"], FINDINGS, n_boot=n_boot, seed=seed,
                                               samples_out=boot_samples[row])
        m["interval_reasons"] = M.interval_reasons(targets, m["intervals"], FINDINGS, row)
        m["n_pairs"] = int(len(images))
        rows[row] = M.clean(m)
    predictions = pd.concat(pred_rows, ignore_index=True) if pred_rows else pd.DataFrame()
    success = edit_success(records[records["pair_id"].isin(set(images["pair_id"]))], predictions, n_boot, seed)
    info = None
    if evaluator_info_path:
        with open(evaluator_info_path) as fh:
            info = json.load(fh)
    result = {
        "rows": rows,
        "n_pairs": int(len(images)),
        "n_with_race": int((targets["race_idx"] >= 0).sum()),
        "n_with_age": int(np.isfinite(targets["age"]).sum()),
        "positives": {f: int(np.nansum(targets["labels"][:, i])) for i, f in enumerate(FINDINGS)},
        "backend": backend,
        "evaluator": info,
        "findings": list(FINDINGS),
        "races": list(RACES),
        "ablation_directions": M.ablation_directions(rows, samples=boot_samples),
        "edit_success": success,
        "splits": list(splits) if splits is not None else None,
        "n_pairs_by_split": _pairs_by_split(records, images),
        "label_rules": {"uncertain": uncertain, "missing": missing, "race_rule": race_rule},
        "definitions": {
            "patho_auroc": "mean over the 5 findings of the AUROC of the predicted probability vs the current study's CheXpert label",
            "race_auroc": "one-vs-rest macro AUROC over Asian/Black/White",
            "age_pearson": "Pearson r of predicted vs true age at the current study",
            "cmig": "Eq. 3: sqrt(gmean(per-finding AUROCs) * gmean([race_auroc, age_pearson])), fractions, as written",
            "kl": "Eq. 4: KL(P||Q) in nats, P/Q = mean predicted probability per finding over real/generated images, normalised over findings",
            "fid": "Frechet distance between Gaussians of evaluator features of real and generated images",
            "intervals": f"bootstrap 95% percentile intervals over pairs ({n_boot} resamples)",
        },
        "paper_table2": M.PAPER_TABLE2,
    }
    write_parquet(predictions, out_predictions)
    write_json(result, out_metrics)
    ledger.write(ledger_path, counts_path)
    log.info("evaluation: %d pairs; rows %s", len(images), {k: (v or {}).get("cmig") for k, v in rows.items()})
    return result


def add_parser(subparsers) -> None:
    """``instructx2x evaluate``: Table 2 metrics for inference records, outside Snakemake."""
    from instructx2x.core.cliargs import non_negative_int, positive_int

    p = subparsers.add_parser("evaluate", help="score edited images (Table 2: AUROC, race, age, CMIG, KL, FID)")
    p.add_argument("--records", required=True, help="inference/records.parquet")
    p.add_argument("--tables", required=True, help="directory with studies/patients/admissions.parquet (ingest)")
    p.add_argument("--out", required=True, help="output directory (metrics.json, predictions.parquet, ledger)")
    p.add_argument("--backend", choices=["xrv", "trained"], default="xrv")
    p.add_argument("--weights-dir", default=None, help="xrv: directory of the torchxrayvision weight files")
    p.add_argument("--model", default=None, help="trained: the evaluator model (rule evaluation_train)")
    p.add_argument("--splits", nargs="*", default=["test"])
    p.add_argument("--uncertain", choices=["zero", "one", "exclude"], default="zero")
    p.add_argument("--bootstrap", type=positive_int, default=200)
    p.add_argument("--seed", type=non_negative_int, default=1234)
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from pathlib import Path

    t, out = Path(args.tables), Path(args.out)
    m = evaluate(args.records, t / "studies.parquet", t / "patients.parquet", t / "admissions.parquet",
                 out_metrics=out / "metrics.json", out_predictions=out / "predictions.parquet",
                 ledger_path=out / "evaluation.tsv", counts_path=out / "evaluation.counts.tsv", backend=args.backend,
                 weights_dir=args.weights_dir, model_path=args.model, uncertain=args.uncertain, n_boot=args.bootstrap,
                 seed=args.seed, splits=args.splits)
    for row, v in m["rows"].items():
        print(row, "" if v is None else {k: v[k] for k in ("patho_auroc", "race_auroc", "age_pearson", "cmig", "kl", "fid")})
    return 0
