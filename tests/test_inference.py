"""Sharded batch editing of test + holdout pairs in both modes, with a tiny offline model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from instructx2x.inference.shards import merge_records, pair_seed, read_instructions, run_shard
from instructx2x.core.ledger import read_ledger
from instructx2x.masks import CATEGORIES
from helpers.tiny_pipeline import build_tiny_pipeline

SIZE = 32
RSE_CFG = {"steps": 3, "image_guidance_scale": 1.5, "guidance_scale": 7.5, "tau": 0.1, "t_rel": 800, "seed_offset": 0}
MASKS_CFG = {"restrict_laterality": True, "patient_left_on_image": "right", "midline": 0.5}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    model = build_tiny_pipeline(root / "model")
    masks = {c: np.zeros((64, 64), np.uint8) for c in CATEGORIES}
    masks["Pleural Effusion"][32:60, 4:60] = 1
    np.savez(root / "pseudo_masks.npz", resolution=np.int64(64), **masks)
    rng = np.random.default_rng(0)
    rows = []
    for i, split in enumerate(["test", "holdout", "train", "test", "test"]):
        img = root / f"past_{i}.png"
        Image.fromarray((rng.random((SIZE, SIZE)) * 255).astype(np.uint8)).save(img)
        ops = [{"op": "add", "finding": "pleural effusion", "location": "left", "severity": None}]
        rows.append({"pair_id": f"5000000{i}_4000000{i}", "subject_id": 10000000 + i, "split": split,
                     "past_image": str(img), "current_image": str(img), "instruction": "add left pleural effusion",
                     "operations": json.dumps(ops), "n_ops": 1})
    rows[4]["past_image"] = str(root / "missing.png")  # a bad item
    pd.DataFrame(rows).to_parquet(root / "instructions.parquet")
    return root, model


def _run(root, model, shard, n_shards, tag):
    outs = {m: root / tag / m / f"shard_{shard}.parquet" for m in ("rse", "wo_rse")}
    run_shard(root / "instructions.parquet", model, root / "pseudo_masks.npz", outs, root / tag / "images", shard,
              n_shards, RSE_CFG, MASKS_CFG, seed=1234)
    return list(outs.values())


def test_shards_edit_test_and_holdout_in_both_modes(setup):
    root, model = setup
    paths = _run(root, model, 0, 2, "a") + _run(root, model, 1, 2, "a")
    rec = merge_records(paths, root / "a" / "records.parquet", root / "a" / "ledger.tsv", root / "a" / "counts.tsv")
    assert set(rec["mode"]) == {"rse", "wo_rse"}
    assert sorted(set(rec["split"])) == ["holdout", "test"]
    assert len(rec) == 2 * 3  # 4 test/holdout pairs, one unreadable
    for row in rec.itertuples():
        assert Image.open(row.edited_path).size == (SIZE, SIZE)
        assert np.load(row.guidance_path).dtype == np.float32
        img = np.asarray(Image.open(row.input_path))
        edited = np.asarray(Image.open(row.edited_path))
        mask = np.asarray(Image.open(row.mask_path)) > 0
        assert np.array_equal(edited[~mask], img[~mask])
        if row.mode == "rse":
            assert row.mask_source == "pseudo" and not mask[:, : SIZE // 2].any()
    # the same pair gets the same seed in both modes, independent of sharding
    seeds = rec.groupby("pair_id")["seed"].nunique()
    assert (seeds == 1).all()
    assert rec.loc[0, "seed"] == pair_seed(rec.loc[0, "pair_id"], 1234)
    ledger = read_ledger(root / "a" / "ledger.tsv")
    assert {r["item_id"].split(":")[0] for r in ledger} == {"50000004_40000004"}
    assert all("unreadable" in r["detail"] for r in ledger)


def test_same_config_gives_identical_table(setup):
    root, model = setup
    first = _run(root, model, 0, 3, "b")[0].read_bytes()
    again = _run(root, model, 0, 3, "b")[0].read_bytes()
    assert first == again


def test_missing_instruction_column_fails_naming_it(tmp_path):
    pd.DataFrame({"pair_id": ["x"], "split": ["test"], "instruction": ["add edema"]}).to_parquet(tmp_path / "i.parquet")
    with pytest.raises(ValueError, match="past_image"):
        read_instructions(tmp_path / "i.parquet", ["test"])
