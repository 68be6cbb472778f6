"""Train entry: Trainer set-up (accumulation, precision, DDP, checkpoint rotation, auto resume,
SIGUSR1 save+requeue), fit, export of the EMA UNet in diffusers format, metrics CSV and loss curve."""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
from pathlib import Path

import lightning as L
import pandas as pd
import torch

from ..core.io import write_text

log = logging.getLogger(__name__)


def _load_init(model_dir):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..model.build import Components, make_scheduler

    kw = dict(local_files_only=True)
    low = dict(kw, low_cpu_mem_usage=True)  # built on the meta device, filled from the file (accelerate)
    return Components(
        UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", **low),
        AutoencoderKL.from_pretrained(model_dir, subfolder="vae", **low),
        CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder", **kw),
        CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer", **kw),
        make_scheduler(),
    )


def _plugins_and_env(devices: int):
    plugins = []
    if "SLURM_JOB_ID" in os.environ:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        plugins.append(SLURMEnvironment(requeue_signal=signal.SIGUSR1, auto_requeue=True))
    return plugins


def train(init_dir, latents_path, out_dir, cfg: dict, seed: int, fast_dev_run: bool = False,
          max_steps: int | None = None, callbacks=()) -> dict:
    """Fit and export. ``latents_path`` is the cache's ``index.json``; ``out_dir`` receives
    checkpoints/, pipeline/, metrics.csv, loss_curve.png. ``callbacks``: extra Lightning callbacks."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from ..model.build import make_scheduler, save_pipeline
    from .module import InstructPix2PixModule, LatentDataModule

    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    L.seed_everything(seed, workers=True)
    comps = _load_init(init_dir)
    comps.scheduler = make_scheduler(cfg.get("prediction_type", "epsilon"),  # exported with the pipeline
                                     cfg.get("timestep_spacing", "leading"))
    base = cfg.get("prediction_base", "none")
    if base == "image":  # the output layer starts at zero: the untrained editor returns its input
        torch.nn.init.zeros_(comps.unet.conv_out.weight)
        torch.nn.init.zeros_(comps.unet.conv_out.bias)
    gpu = torch.cuda.is_available() and cfg["accelerator"] in ("auto", "gpu")
    devices = cfg["devices"] if gpu else 1
    accum = cfg["gradient_accumulation"]
    eff = cfg["batch_size"] * accum * devices * cfg["num_nodes"]  # samples per optimizer step, all ranks
    module = InstructPix2PixModule(
        comps.unet, comps.text_encoder, comps.tokenizer, comps.scheduler, comps.vae.config.scaling_factor,
        lr=cfg["lr"], dropout=cfg["conditioning_dropout"], ema_decay=cfg["ema_decay"], effective_batch_size=eff,
        seed=seed, gradient_checkpointing=gpu and cfg["gradient_checkpointing"], prediction_base=base,
    )
    dm = LatentDataModule(latents_path, cfg["batch_size"], seed)
    steps = max_steps if max_steps is not None else cfg["steps"]
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="step{step:07d}", auto_insert_metric_name=False,
                           every_n_train_steps=cfg["checkpoint_every"], save_top_k=cfg["keep_checkpoints"],
                           monitor="step", mode="max", save_last=True,
                           # a step that ends an epoch is saved after that epoch's validation, so a
                           # kill between the two cannot lose the val_loss (resume skips validation)
                           save_on_train_epoch_end=False)
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=devices, num_nodes=cfg["num_nodes"],
        strategy="ddp" if devices * cfg["num_nodes"] > 1 else "auto",
        precision="bf16-mixed" if gpu and cfg["bf16_on_gpu"] else "32-true",
        max_steps=steps, accumulate_grad_batches=accum, gradient_clip_val=cfg["grad_clip"],
        callbacks=[ckpt, *callbacks], logger=CSVLogger(ckpt_dir, name="lightning_logs", version="run"),
        log_every_n_steps=1, check_val_every_n_epoch=cfg["val_every_n_epochs"], num_sanity_val_steps=0,
        plugins=_plugins_and_env(devices), fast_dev_run=fast_dev_run, deterministic=not gpu,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        # our EpochSampler shards by global rank itself, so a mid-epoch resume skips on every rank
        use_distributed_sampler=False,
    )
    if not gpu:
        # deterministic=True also fills every new tensor with NaN (a debugging aid against reads of
        # uninitialised memory) and that costs ~6% of a CPU step; the algorithms stay deterministic
        torch.utils.deterministic.fill_uninitialized_memory = False
    _forget_stale_checkpoints(ckpt_dir, {"training": cfg, "seed": seed},
                              [Path(latents_path), Path(init_dir) / "unet" / "config.json"])
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if last.exists() and not fast_dev_run else None
    raw_csv = ckpt_dir / "lightning_logs" / "run" / "metrics.csv"
    earlier = ckpt_dir / "metrics_before_resume.csv"
    if resume:
        log.info("resuming from %s", resume)
        if raw_csv.exists():  # the CSV logger starts a new file: keep the rows logged so far
            prev = pd.read_csv(raw_csv)
            if earlier.exists():
                prev = pd.concat([pd.read_csv(earlier), prev])
            prev.to_csv(earlier, index=False)
    elif earlier.exists():
        earlier.unlink()
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    info = {"effective_batch_size": eff, "optimizer_steps": int(trainer.global_step), "resumed": bool(resume)}
    if fast_dev_run or trainer.global_rank != 0:
        return info
    comps.unet = module.ema_unet()  # the EMA weights are the model
    save_pipeline(comps, out / "pipeline", prediction_base=base)
    info.update(write_metrics([earlier, raw_csv], out / "metrics.csv", out / "loss_curve.png"))
    log.info("trained: %s", info)
    return info


def _forget_stale_checkpoints(ckpt_dir: Path, settings: dict, files) -> None:
    """Auto resume only continues the same run: checkpoints of other settings/inputs are removed."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    fp = h.hexdigest()
    stamp = ckpt_dir / "run_fingerprint.txt"
    if ckpt_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fp):
        log.info("checkpoints in %s belong to another run: removed", ckpt_dir)
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp + "\n")


def write_metrics(raw_csvs, csv_path, png_path) -> dict:
    """Per-optimizer-step metrics (step, train_loss, val_loss, effective_batch_size, optimizer_steps)."""
    raw = pd.concat([pd.read_csv(p) for p in raw_csvs if Path(p).exists()], ignore_index=True)
    cols = [c for c in ("step", "train_loss", "val_loss", "effective_batch_size", "optimizer_steps") if c in raw]
    df = raw[cols].groupby("step", as_index=False).first().sort_values("step")
    text = df.to_csv(index=False, float_format="%.6g")
    write_text(text, csv_path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    tl = df.dropna(subset=["train_loss"])
    ax.plot(tl["step"], tl["train_loss"], lw=0.6, alpha=0.4, label="train loss")
    w = max(1, len(tl) // 20)
    ax.plot(tl["step"], tl["train_loss"].rolling(w, min_periods=1).mean(), label=f"train loss ({w}-step mean)")
    if "val_loss" in df and df["val_loss"].notna().any():
        vl = df.dropna(subset=["val_loss"])
        ax.plot(vl["step"], vl["val_loss"], "o-", label="val loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("noise MSE")
    ax.legend()
    fig.tight_layout()
    tmp = Path(str(png_path) + ".tmp.png")
    fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, png_path)
    n = len(tl)
    k = max(1, n // 10)
    return {"first_loss": float(tl["train_loss"].head(k).mean()) if n else math.nan,
            "last_loss": float(tl["train_loss"].tail(k).mean()) if n else math.nan}
