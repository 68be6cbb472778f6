"""Training under real DDP: two CPU processes (gloo), launched as two nodes of one process each
(both local_rank 0, the case the old local-rank seeding got wrong). The ranks draw different noise
and train on different halves of each epoch; a run interrupted in the middle of an epoch and
resumed draws the same noise, sees the same batches and exports the same weights as an
uninterrupted one. Also: the exported EMA is not dominated by the initial weights (warm-up)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instructx2x.training.latents import cache_latents
from instructx2x.training.prepare import prepare
from instructx2x.training.train import train
from training_fixtures import make_pairs, tiny_config

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = tiny_config()
    pq = make_pairs(tmp, n=12, size=32)
    prepare(pq, tmp / "init", cfg["model"], 0, 32)
    idx = cache_latents(pq, tmp / "init", tmp / "lat", ["train", "val"], 2, 32, 0, cfg["training"]["augment"],
                        num_workers=0)
    return tmp, cfg, idx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp(tmp, idx, out, tcfg, record, max_steps=None):
    port = _free_port()
    procs = []
    for node in (0, 1):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node), LOCAL_RANK="0",
                   PYTHONPATH=os.pathsep.join(sys.path))
        env.pop("SLURM_JOB_ID", None)
        arg = json.dumps({"init": str(tmp / "init"), "latents": str(idx), "out": str(out), "cfg": tcfg, "seed": 0,
                          "max_steps": max_steps, "record": str(record)})
        procs.append(subprocess.Popen([sys.executable, str(WORKER), arg], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    return json.loads([ln for ln in outs[0].splitlines() if ln.startswith("RESULT ")][-1][7:])


def _records(record):
    rows = []
    for r in (0, 1):
        rows += [json.loads(ln) for ln in Path(f"{record}.rank{r}.jsonl").read_text().splitlines()]
    return {(x["rank"], x["step"]): x for x in rows}


def _unet(d):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(d, subfolder="unet").state_dict()


@pytest.mark.slow
def test_two_process_ddp_seeds_by_global_rank_and_resumes_mid_epoch(prepared, tmp_path):
    tmp, cfg, idx = prepared
    # 10 train pairs x 2 copies = 20 latents; 2 ranks x batch 5: 2 steps per epoch; stop after step 3
    tcfg = dict(cfg["training"], batch_size=5, steps=4, checkpoint_every=1, keep_checkpoints=2, num_nodes=2,
                devices=1, accelerator="cpu")
    full = _ddp(tmp, idx, tmp_path / "full", tcfg, tmp_path / "full_rec")
    assert full["optimizer_steps"] == 4 and full["effective_batch_size"] == 10
    rec = _records(tmp_path / "full_rec")
    assert sorted(rec) == [(r, s) for r in (0, 1) for s in range(4)]
    for s in range(4):
        a, b = rec[(0, s)], rec[(1, s)]
        assert a["local_rank"] == b["local_rank"] == 0  # two nodes: the local rank repeats ...
        assert a["seed"] != b["seed"] and a["loss"] != b["loss"]  # ... the draws do not
    part = _ddp(tmp, idx, tmp_path / "res", tcfg, tmp_path / "part_rec", max_steps=3)
    assert part["optimizer_steps"] == 3
    state = torch.load(tmp_path / "res" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 3 and state["epoch"] == 1  # in the middle of epoch 1
    resumed = _ddp(tmp, idx, tmp_path / "res", tcfg, tmp_path / "res_rec")
    assert resumed["resumed"] and resumed["optimizer_steps"] == 4
    after = _records(tmp_path / "res_rec")
    assert sorted(after) == [(0, 3), (1, 3)]  # only the missing step was trained
    for r in (0, 1):  # same noise, same batch (the rest of epoch 1 of this rank), same loss
        assert after[(r, 3)]["seed"] == rec[(r, 3)]["seed"]
        assert after[(r, 3)]["texts"] == rec[(r, 3)]["texts"]
        assert after[(r, 3)]["loss"] == pytest.approx(rec[(r, 3)]["loss"], rel=1e-5)
    a, b = _unet(tmp_path / "full" / "pipeline"), _unet(tmp_path / "res" / "pipeline")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_exported_ema_is_not_dominated_by_the_initial_weights(prepared, tmp_path):
    """Decay 0.9999 (the paper's) for 4 steps: without warm-up the EMA would still be 99.96% the
    initial weights; with diffusers' warm-up min(decay, (1+n)/(10+n)) it follows the trained UNet."""
    tmp, cfg, idx = prepared
    tcfg = dict(cfg["training"], batch_size=10, steps=4, checkpoint_every=4, ema_decay=0.9999)
    train(tmp / "init", idx, tmp_path / "m", tcfg, 0)
    init, ema = _unet(tmp / "init"), _unet(tmp_path / "m" / "pipeline")
    sd = torch.load(tmp_path / "m" / "checkpoints" / "last.ckpt", weights_only=False)
    trained = {k[len("unet."):]: v for k, v in sd["state_dict"].items() if k.startswith("unet.")}
    assert sd["ema"]["optimization_step"] == 4 and sd["ema"]["decay"] == 0.9999  # EMA state in the checkpoint
    moved = sum(float((trained[k] - init[k]).norm() ** 2) for k in init) ** 0.5
    ema_moved = sum(float((ema[k] - init[k]).norm() ** 2) for k in init) ** 0.5
    assert moved > 0 and ema_moved > 0.5 * moved, (ema_moved, moved)
