"""LightningModule and LightningDataModule of InstructPix2Pix fine-tuning (method §8).

Per step (the algorithm of diffusers' ``train_instruct_pix2pix.py``): sample the target latent from
the cached posterior, scale it, add noise at a uniform timestep, encode the instruction with the
frozen text encoder, apply conditioning dropout (5% text only -> empty-prompt embedding, 5% image
only -> zero image latent, 5% both), predict the noise with the 8-channel UNet from
[noisy latent, image latent], MSE to the noise. EMA of the UNet weights is updated after every
optimizer step and is what gets exported.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class LatentPairs(Dataset):
    """The rows of one split of a ``LatentCache`` (memory-mapped: a row is read when it is used)."""

    def __init__(self, cache, split: str):
        self.cache = cache
        self.idx = [i for i, r in enumerate(cache.rows) if r["split"] == split]
        self.text = [cache.rows[i]["instruction"] for i in self.idx]

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        x = self.cache.latents(self.idx[i])
        return {"mean": x[0], "std": x[1], "cond": x[2], "text": self.text[i]}


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch (Lightning calls ``set_epoch``): a resumed run sees the same order.

    Under DDP each global rank takes every ``world``-th index of the same permutation (padded to a
    multiple of ``world`` by its first indices, as ``DistributedSampler`` does); Lightning is told
    not to replace this sampler (``use_distributed_sampler=False``), so ``skip`` works on every rank.
    ``skip(epoch, n)`` makes the next pass over ``epoch`` start after the rank's first ``n`` indices:
    what a run resumed from a mid-epoch checkpoint needs to see the rest of that epoch's batches.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.n, self.seed, self.rank, self.world, self.epoch = n, seed, rank, world, 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def skip(self, epoch: int, n: int) -> None:
        self._skip = (epoch, n) if n > 0 else None

    def __len__(self):
        return -(-self.n // self.world)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + 1009 * self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.world > 1:
            total = len(self) * self.world
            order = (order * (total // self.n + 1))[:total][self.rank::self.world]
        if self._skip is not None and self._skip[0] == self.epoch:
            order = order[self._skip[1]:]
            self._skip = None
        return iter(order)


class ResumableLoader(DataLoader):
    """A DataLoader with Lightning's ``state_dict``/``load_state_dict`` interface.

    The state is the epoch and the number of its batches already trained on, read from the
    trainer's own batch progress when the checkpoint is written (the data fetcher prefetches, so
    counting yielded batches would be one ahead); it is the same on every rank. On load, each
    rank's sampler skips those batches of its own share: a run resumed from a mid-epoch checkpoint
    continues with the next batch of the same permutation, exactly as the uninterrupted run did,
    with one process or under DDP (tested with two gloo processes).
    """

    progress = None  # set by the data module: () -> (epoch, batches done in it)

    def state_dict(self) -> dict:
        epoch, done = self.progress() if self.progress is not None else (self.sampler.epoch, 0)
        return {"epoch": int(epoch), "batches_done": int(done)}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.sampler, EpochSampler):
            self.sampler.skip(state["epoch"], state["batches_done"] * self.batch_size)


class LatentDataModule(L.LightningDataModule):
    def __init__(self, cache_path, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__()
        self.cache_path, self.batch_size, self.seed, self.num_workers = cache_path, batch_size, seed, num_workers

    def setup(self, stage=None):
        from .latents import LatentCache

        cache = LatentCache(self.cache_path)
        self.train, self.val = LatentPairs(cache, "train"), LatentPairs(cache, "val")
        if len(self.train) == 0:
            raise ValueError(f"{self.cache_path}: no train latents")

    def _rank_world(self):
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank_world()
        loader = ResumableLoader(self.train, batch_size=self.batch_size,
                                 sampler=EpochSampler(len(self.train), self.seed, rank, world), drop_last=False,
                                 num_workers=self.num_workers)
        trainer = self.trainer
        if trainer is not None:
            def progress():
                # at a checkpoint written in on_train_batch_end, `processed` counts the current batch
                return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
            loader.progress = progress
        return loader

    def val_dataloader(self):
        if len(self.val) == 0:
            return []
        rank, world = self._rank_world()
        sampler = None
        if world > 1:  # each rank its share; val_loss is averaged over the ranks (sync_dist)
            sampler = torch.utils.data.DistributedSampler(self.val, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(self.val, batch_size=self.batch_size, shuffle=False, sampler=sampler,
                          num_workers=self.num_workers)


def draw_seed(seed: int, step: int, global_rank: int, micro: int) -> int:
    """A 63-bit seed from the tuple (distinct tuples give unrelated streams; numpy's SeedSequence)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, step, global_rank, micro]).generate_state(1, np.uint64)[0] >> 1)


class InstructPix2PixModule(L.LightningModule):
    def __init__(self, unet, text_encoder, tokenizer, scheduler, scaling_factor: float, lr: float = 1e-4,
                 dropout: float = 0.05, ema_decay: float = 0.999, effective_batch_size: int = 1, seed: int = 0,
                 gradient_checkpointing: bool = False, prediction_base: str = "none"):
        super().__init__()
        from instructx2x.model.build import PREDICTION_BASES

        if prediction_base not in PREDICTION_BASES:
            raise ValueError(f"prediction_base must be one of {PREDICTION_BASES}, got {prediction_base!r}")
        if prediction_base == "image" and scheduler.config.prediction_type != "sample":
            raise ValueError("prediction_base 'image' needs prediction_type 'sample' (the UNet predicts "
                             "the clean latent's change from the input image's latent)")
        self.prediction_base = prediction_base
        self.unet, self.text_encoder, self.tokenizer, self.noise_scheduler = unet, text_encoder, tokenizer, scheduler
        self.text_encoder.requires_grad_(False).eval()
        self.unet.train()
        from diffusers.training_utils import EMAModel

        # diffusers' EMA: decay warm-up min(decay, (1 + n) / (10 + n)) at optimizer step n (as the
        # authors' LDM code and diffusers' train_instruct_pix2pix.py), one multi-tensor update
        self.ema = EMAModel(unet.parameters(), decay=ema_decay, foreach=True)
        self.scaling_factor, self.lr, self.dropout, self.ema_decay = scaling_factor, lr, dropout, ema_decay
        self.effective_batch_size, self.seed = effective_batch_size, seed
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone(), persistent=False)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()  # see encode_text

    TEXT_CACHE_SIZE = 4096  # instructions come from a small grammar: most batches are cache hits

    def encode_text(self, texts):
        """Frozen text-encoder embeddings, memoised per instruction string (bounded, least recently
        used evicted): the encoder is frozen and in eval mode, so a cached embedding is the same
        tensor it would compute again, and a step skips its forward pass."""
        cache = self._text_cache
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            from instructx2x.model.tokenizer import check_length

            check_length(self.tokenizer, missing)  # an over-long instruction is refused, never cut
            ids = self.tokenizer(missing, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            with torch.no_grad():
                emb = self.text_encoder(ids)[0]
            for t, e in zip(missing, emb):
                cache[t] = e
        for t in texts:
            cache.move_to_end(t)
        out = torch.stack([cache[t] for t in texts]).to(self.device)
        while len(cache) > self.TEXT_CACHE_SIZE:
            cache.popitem(last=False)
        return out

    def draw_seed(self) -> int:
        """The seed of this micro-batch's random draws: (seed, optimizer step, GLOBAL rank, micro-batch),
        so every rank of every node draws different noise, and a resumed run the same as an
        uninterrupted one (the rank of a process on its node, ``local_rank``, repeats across nodes)."""
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return draw_seed(self.seed, self.global_step, rank, getattr(self, "_micro", 0))

    def _generator(self):
        self.last_draw_seed = self.draw_seed()
        return torch.Generator().manual_seed(self.last_draw_seed)

    def loss(self, batch, g):
        dev = self.device
        eps_z = torch.randn(batch["mean"].shape, generator=g).to(dev)
        latents = (batch["mean"] + batch["std"] * eps_z) * self.scaling_factor
        noise = torch.randn(latents.shape, generator=g).to(dev)
        bsz = latents.shape[0]
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,), generator=g).to(dev)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(latents.dtype)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        text = self.encode_text(batch["text"])
        cond = batch["cond"]
        # conditioning dropout: u<p text only; p<=u<2p both; 2p<=u<3p image only (5%/5%/5%)
        u = torch.rand(bsz, generator=g).to(dev)
        p = self.dropout
        drop_text = (u < 2 * p).view(-1, 1, 1)
        drop_img = ((u >= p) & (u < 3 * p)).view(-1, 1, 1, 1)
        empty = self.encode_text([""]).expand_as(text)  # memoised like every instruction
        text = torch.where(drop_text, empty, text)
        cond = torch.where(drop_img, torch.zeros_like(cond), cond)
        pred = self.unet(torch.cat([noisy, cond], dim=1), t, encoder_hidden_states=text).sample
        kind = self.noise_scheduler.config.prediction_type
        if kind == "sample":  # the clean latent (or its change from the input image's latent)
            target = latents
            if self.prediction_base == "image":  # the image-dropped branch has no base (zeros)
                target = latents - cond * self.scaling_factor
        elif kind == "v_prediction":
            target = a.sqrt() * noise - (1 - a).sqrt() * latents
        else:
            target = noise
        return F.mse_loss(pred.float(), target.float())

    def training_step(self, batch, batch_idx):
        self._micro = batch_idx
        loss = self.loss(batch, self._generator())
        bs = batch["mean"].shape[0]
        self.log_dict({"train_loss": loss, "effective_batch_size": float(self.effective_batch_size),
                       "optimizer_steps": float(self.global_step)}, on_step=True, batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        g = torch.Generator().manual_seed(self.seed + batch_idx)  # fixed draws: comparable across epochs
        self.log("val_loss", self.loss(batch, g), on_epoch=True, batch_size=batch["mean"].shape[0], sync_dist=True)

    def on_fit_start(self):
        self.ema.to(self.device)

    def optimizer_step(self, *args, **kwargs):
        # EMA right after each optimizer step (before any checkpoint callback saves the state)
        super().optimizer_step(*args, **kwargs)
        self.ema.step(self.unet.parameters())

    def ema_unet(self):
        """A copy of the UNet holding the EMA weights (what is exported)."""
        unet = copy.deepcopy(self.unet).eval()
        self.ema.copy_to(unet.parameters())
        return unet

    def on_save_checkpoint(self, checkpoint):
        checkpoint["ema"] = self.ema.state_dict()  # shadow weights, optimizer step count, decay

    def on_load_checkpoint(self, checkpoint):
        if "ema" not in checkpoint:
            raise ValueError("checkpoint has no EMA state (written by an older version): delete it to start afresh")
        self.ema.load_state_dict(checkpoint["ema"])
        self.ema.to(self.device)

    def configure_optimizers(self):
        # foreach: one multi-tensor update instead of a Python loop over ~200 parameter tensors
        return torch.optim.AdamW(self.unet.parameters(), lr=self.lr, weight_decay=1e-2, foreach=True)

    def state_dict(self, *a, **k):  # checkpoints hold the unet only (+ "ema"; frozen parts come from model/init)
        sd = super().state_dict(*a, **k)
        return {kk: v for kk, v in sd.items() if not kk.startswith("text_encoder.")}

    def load_state_dict(self, sd, strict=True, **k):
        return super().load_state_dict(sd, strict=False, **k)
