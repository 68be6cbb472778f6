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
    def __init__(self, cache: dict, split: str):
        idx = [i for i, r in enumerate(cache["rows"]) if r["split"] == split]
        self.mean = cache["target_mean"][idx]
        self.std = cache["target_std"][idx]
        self.cond = cache["cond"][idx]
        self.text = [cache["rows"][i]["instruction"] for i in idx]

    def __len__(self):
        return len(self.text)

    def __getitem__(self, i):
        return {"mean": self.mean[i], "std": self.std[i], "cond": self.cond[i], "text": self.text[i]}


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch (Lightning calls ``set_epoch``): a resumed run sees the same order.

    ``skip(epoch, n)`` makes the next pass over ``epoch`` start after its first ``n`` indices: what a
    run resumed from a mid-epoch checkpoint needs to see the rest of that epoch's batches, in order.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def skip(self, epoch: int, n: int) -> None:
        self._skip = (epoch, n) if n > 0 else None

    def __len__(self):
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + 1009 * self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self._skip is not None and self._skip[0] == self.epoch:
            order = order[self._skip[1]:]
            self._skip = None
        return iter(order)


class ResumableLoader(DataLoader):
    """A DataLoader with Lightning's ``state_dict``/``load_state_dict`` interface.

    The state is the epoch and the number of its batches already trained on, read from the
    trainer's own batch progress when the checkpoint is written (the data fetcher prefetches, so
    counting yielded batches would be one ahead). On load, the sampler skips those batches: a run
    resumed from a mid-epoch checkpoint continues with the next batch of the same permutation,
    exactly as the uninterrupted run did. Single-process only: under DDP Lightning re-wraps the
    sampler and resumes such checkpoints without this skip (its documented behaviour).
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
        cache = torch.load(self.cache_path, weights_only=True)
        self.train, self.val = LatentPairs(cache, "train"), LatentPairs(cache, "val")
        if len(self.train) == 0:
            raise ValueError(f"{self.cache_path}: no train latents")

    def train_dataloader(self):
        loader = ResumableLoader(self.train, batch_size=self.batch_size,
                                 sampler=EpochSampler(len(self.train), self.seed), drop_last=False,
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
        return DataLoader(self.val, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)


class InstructPix2PixModule(L.LightningModule):
    def __init__(self, unet, text_encoder, tokenizer, scheduler, scaling_factor: float, lr: float = 1e-4,
                 dropout: float = 0.05, ema_decay: float = 0.999, effective_batch_size: int = 1, seed: int = 0,
                 gradient_checkpointing: bool = False):
        super().__init__()
        self.unet, self.text_encoder, self.tokenizer, self.noise_scheduler = unet, text_encoder, tokenizer, scheduler
        self.text_encoder.requires_grad_(False).eval()
        self.unet.train()
        self.ema = copy.deepcopy(unet).requires_grad_(False).eval()
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

    def _generator(self):
        # a step-indexed generator: the same draws after a resume as in an uninterrupted run
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step * 97 + self.trainer.local_rank
                                             + 7919 * getattr(self, "_micro", 0))

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
        return F.mse_loss(pred.float(), noise.float())

    def training_step(self, batch, batch_idx):
        self._micro = batch_idx
        loss = self.loss(batch, self._generator())
        bs = batch["mean"].shape[0]
        self.log_dict({"train_loss": loss, "effective_batch_size": float(self.effective_batch_size),
                       "optimizer_steps": float(self.global_step)}, on_step=True, batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        g = torch.Generator().manual_seed(self.seed + batch_idx)  # fixed draws: comparable across epochs
        self.log("val_loss", self.loss(batch, g), on_epoch=True, batch_size=batch["mean"].shape[0])

    def optimizer_step(self, *args, **kwargs):
        # EMA right after each optimizer step (before any checkpoint callback saves the state)
        super().optimizer_step(*args, **kwargs)
        with torch.no_grad():  # one multi-tensor kernel over all parameters
            torch._foreach_lerp_(list(self.ema.parameters()), [p.detach() for p in self.unet.parameters()],
                                 1 - self.ema_decay)

    def configure_optimizers(self):
        # foreach: one multi-tensor update instead of a Python loop over ~200 parameter tensors
        return torch.optim.AdamW(self.unet.parameters(), lr=self.lr, weight_decay=1e-2, foreach=True)

    def state_dict(self, *a, **k):  # checkpoints hold unet + ema only (frozen parts come from model/init)
        sd = super().state_dict(*a, **k)
        return {kk: v for kk, v in sd.items() if not kk.startswith("text_encoder.")}

    def load_state_dict(self, sd, strict=True, **k):
        return super().load_state_dict(sd, strict=False, **k)
