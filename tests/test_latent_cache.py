"""The streaming, sharded latent cache: resumable after kill -9, independent of the job split,
unreadable pairs to the ledger, read memory-mapped. Small real inputs (PNG pairs, tiny VAE)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from instructx2x.core.ledger import Ledger
from instructx2x.training.latents import LatentCache, cache_latents, encode_job, plan_shards, write_index
from instructx2x.training.prepare import prepare
from training_fixtures import make_pairs, tiny_config

AUG = {"rotation_deg": 2.0, "crop_scale": 0.9, "flip_p": 0.5}


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latcache")
    cfg = tiny_config()
    pq = make_pairs(tmp, n=12, size=32)
    prepare(pq, tmp / "init", cfg["model"], 0, 32)
    return tmp, pq


def _files(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("shard_*"))}


def test_plan_covers_every_pair_once_in_contiguous_job_blocks():
    for n, jobs, per in ((10, 1, 4), (10, 3, 2), (7, 4, 3), (3, 5, 1)):
        got = [i for j in range(jobs) for r in plan_shards(n, jobs, j, per) for i in r]
        assert got == list(range(n))
        assert all(len(r) <= per for j in range(jobs) for r in plan_shards(n, jobs, j, per))
    with pytest.raises(ValueError, match="job 2 is not in 0..1"):
        plan_shards(10, 2, 2, 4)


def test_cache_does_not_depend_on_jobs_batch_or_workers(init, tmp_path):
    tmp, pq = init
    a = cache_latents(pq, tmp / "init", tmp_path / "a", ["train", "val"], 3, 32, 0, AUG, shard_pairs=5, batch=6,
                      num_workers=0)
    b = cache_latents(pq, tmp / "init", tmp_path / "b", ["train", "val"], 3, 32, 0, AUG, jobs=3, shard_pairs=2,
                      batch=3, num_workers=2)
    ca, cb = LatentCache(a), LatentCache(b)
    assert len(ca) == len(cb) == 36 and ca.rows == cb.rows
    assert len(json.loads(b.read_text())["shards"]) == 6  # 3 jobs x 2 shards of <= 2 pairs
    for i in range(len(ca)):  # the VAE's batch size changes float rounding, not the latents
        torch.testing.assert_close(ca.latents(i), cb.latents(i), rtol=1e-4, atol=1e-5)
    copies = {(r["pair_id"], r["copy"]) for r in ca.rows}
    assert len(copies) == 36 and {r["copy"] for r in ca.rows} == {0, 1, 2}


def test_shards_are_memory_mapped_not_loaded(init, tmp_path):
    tmp, pq = init
    idx = cache_latents(pq, tmp / "init", tmp_path / "c", ["train"], 2, 32, 0, AUG, shard_pairs=4, num_workers=0)
    cache = LatentCache(idx)
    x = cache.latents(len(cache) - 1)
    assert x.shape == (3, 4, 4, 4)
    arrays = list(cache._arrays.values())
    assert len(arrays) == 1 and isinstance(arrays[0], np.memmap)  # only the shard that was read, mapped


def test_unreadable_pair_goes_to_the_ledger_and_the_rest_is_cached(init, tmp_path):
    import pandas as pd

    tmp, pq = init
    df = pd.read_parquet(pq)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    df.loc[3, "current_image"] = str(bad)
    df.to_parquet(tmp_path / "i.parquet", index=False)
    ledger = Ledger("training")
    idx = cache_latents(tmp_path / "i.parquet", tmp / "init", tmp_path / "d", ["train", "val"], 2, 32, 0, AUG,
                        shard_pairs=3, num_workers=0, ledger=ledger)
    cache = LatentCache(idx)
    assert len(cache) == 22 and df.loc[3, "pair_id"] not in {r["pair_id"] for r in cache.rows}
    assert [(e["item_id"], e["reason"]) for e in ledger.entries] == [(df.loc[3, "pair_id"], "unreadable_image")]
    assert ledger.counts[0]["rows_in"] == 12 and ledger.counts[0]["rows_out"] == 11


def test_changed_settings_do_not_reuse_old_shards(init, tmp_path):
    tmp, pq = init
    kw = dict(splits=["train"], copies=2, resolution=32, aug=AUG, shard_pairs=4, num_workers=0)
    encode_job(pq, tmp / "init", tmp_path / "shards", seed=0, **kw)
    m0 = (tmp_path / "shards" / "job_000" / "shard_00000.npy").read_bytes()
    m1 = encode_job(pq, tmp / "init", tmp_path / "shards", seed=1, **kw)
    assert (tmp_path / "shards" / "job_000" / "shard_00000.npy").read_bytes() != m0  # re-encoded, seed 1
    with pytest.raises(ValueError, match="do not cover every job"):
        write_index([dict(m1, jobs=2)], tmp_path / "index.json")


KILLED_JOB = """
import sys, logging, time
from instructx2x.training import latents
from instructx2x.training.latents import encode_job
import torch
torch.set_num_threads(int(sys.argv[4]))  # the parent's thread count: float sums in the same order, same bytes
logging.basicConfig(level=logging.INFO)
# the job pauses 5 s after each finished shard, so the kill lands mid-run however loaded the machine is
_finish = latents._ShardWriter.finish
latents._ShardWriter.finish = lambda self: (_finish(self), time.sleep(5))
encode_job(sys.argv[1], sys.argv[2], sys.argv[3], splits=["train", "val"], copies=4, resolution=64, seed=0,
           aug={"rotation_deg": 2.0, "crop_scale": 0.9, "flip_p": 0.5}, shard_pairs=2, batch=8, num_workers=1)
"""


def test_killed_job_resumes_from_its_last_finished_shard(tmp_path):
    """kill -9 the encoding process once its first shard is finished; the rerun keeps the finished
    shards (same files, not re-encoded) and the result is byte-identical to an uninterrupted run."""
    cfg = tiny_config()
    pq = make_pairs(tmp_path, n=30, size=64)
    prepare(pq, tmp_path / "init", dict(cfg["model"], tiny=dict(cfg["model"]["tiny"], vae_steps=2)), 0, 64)
    full = tmp_path / "full"
    encode_job(pq, tmp_path / "init", full, splits=["train", "val"], copies=4, resolution=64, seed=0, aug=AUG,
               shard_pairs=2, batch=8, num_workers=1)
    res = tmp_path / "res"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_JOB, pq, str(tmp_path / "init"), str(res),
                             str(torch.get_num_threads())], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = res / "job_000" / "shard_00000.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (res / "job_000").glob("shard_*.json"))
    assert proc.returncode == -signal.SIGKILL and 1 <= len(done) < 15, done  # killed in the middle
    kept = {n: (res / "job_000" / n).stat().st_mtime_ns for n in done}
    m = encode_job(pq, tmp_path / "init", res, splits=["train", "val"], copies=4, resolution=64, seed=0, aug=AUG,
                   shard_pairs=2, batch=8, num_workers=1)
    assert {n: (res / "job_000" / n).stat().st_mtime_ns for n in done} == kept  # finished shards not redone
    assert len(m["shards"]) == 15 and not list((res / "job_000").glob(".*.tmp"))
    assert _files(res) == _files(full)
