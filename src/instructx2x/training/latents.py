"""Latent cache: the frozen VAE run once over (augmented copies of) the train/val pairs.

The VAE is frozen, so its output is a rule output. Augmentation happens in pixel space, so each
pair is cached in ``copies`` seeded augmented versions (copy 0 unaugmented); a flipped copy
stores the left/right-swapped instruction. Per copy: the target's posterior mean and std (a fresh
sample is drawn at every step, as InstructPix2Pix does) and the conditioning image's mode latent
(as the pipeline uses).

Built to run at the paper's scale (19,204 pairs x 4 copies at 512x512, ~15 GB of latents):

* **Streaming.** A DataLoader with workers reads, resizes and augments the images of a batch of
  pairs while the VAE encodes the previous one (on the GPU when there is one, with torch's
  threads on the CPU otherwise). Nothing is held but the batches in flight: peak memory depends
  on the batch size, not on the number of pairs.
* **Sharded and resumable.** The pairs of a job are cut into shards of ``shard_pairs`` pairs. A
  shard is written as it is finished (``shard_NNNNN.npy``, float32 ``(rows, 3, C, h, w)`` =
  [target mean, target std, condition], appended batch by batch; then its ``.json`` with the
  rows and the pairs set aside, which marks it complete). A killed job (``kill -9``, preemption)
  resumes from its last finished shard; shards of other settings or inputs (a fingerprint) are
  removed, never reused.
* **Split into jobs.** Job ``j`` of ``jobs`` encodes a contiguous block of the pairs, so the rule
  ``training_latents_job`` runs N cluster jobs (``training.latent_jobs``) and
  ``training_latents`` writes ``index.json`` over their shards. Every copy's augmentation is
  seeded by (seed, pair_id, copy): the cache does not depend on N, the batch or the workers.
* **Read lazily.** ``LatentCache`` memory-maps the shards (``np.load(mmap_mode="r")``): a training
  rank reads the rows it trains on, never the whole cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zlib
from bisect import bisect_right
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..core.io import write_json
from .data import augment, load_image, read_instructions

log = logging.getLogger(__name__)

FORMAT = 1
INDEX_NAME = "index.json"


# ------------------------------------------------------------------------------------------------
# Reading and augmenting (DataLoader workers)
# ------------------------------------------------------------------------------------------------


def copy_rng(seed: int, pair_id: str, copy: int) -> np.random.Generator:
    """The generator of one augmented copy: the same draws whatever the job split, batch or worker."""
    return np.random.default_rng([int(seed), zlib.crc32(str(pair_id).encode()), int(copy)])


class PairCopies(Dataset):
    """Item ``i``: pair ``i`` of the table, both images read once, and its ``copies`` copies."""

    def __init__(self, df, resolution: int, copies: int, seed: int, aug: dict):
        self.pair_id = df["pair_id"].astype(str).tolist()
        self.split = df["split"].astype(str).tolist()
        self.past = df["past_image"].astype(str).tolist()
        self.cur = df["current_image"].astype(str).tolist()
        self.text = df["instruction"].astype(str).tolist()
        self.resolution, self.copies, self.seed, self.aug = resolution, copies, seed, aug

    def __len__(self):
        return len(self.pair_id)

    def __getitem__(self, i: int) -> dict:
        pid = self.pair_id[i]
        try:
            past, cur = load_image(self.past[i], self.resolution), load_image(self.cur[i], self.resolution)
        except (OSError, ValueError) as e:  # core.errors.UnreadableImage is a ValueError
            return {"i": i, "pair_id": pid, "error": " ".join(str(e).split())[:200]}
        ps, cs, rows = [], [], []
        for k in range(self.copies):
            if k == 0:
                p, c, text, flip = past, cur, self.text[i], False
            else:
                a = self.aug
                p, c, text, flip = augment(past, cur, self.text[i], copy_rng(self.seed, pid, k), a["rotation_deg"],
                                           a["crop_scale"], a["flip_p"])
            ps.append(p)
            cs.append(c)
            rows.append({"pair_id": pid, "split": self.split[i], "copy": k, "flip": bool(flip), "instruction": text})
        return {"i": i, "pair_id": pid, "past": torch.stack(ps), "cur": torch.stack(cs), "rows": rows}


def _as_list(items):
    return items


def _one_thread(_worker_id):
    torch.set_num_threads(1)  # workers read and augment; the VAE in the main process has the threads


# ------------------------------------------------------------------------------------------------
# Writing shards
# ------------------------------------------------------------------------------------------------


def plan_shards(n_pairs: int, jobs: int, job: int, shard_pairs: int) -> list[range]:
    """Job ``job`` of ``jobs`` takes a contiguous block of the pairs, cut into shards."""
    if not 0 <= job < jobs:
        raise ValueError(f"job {job} is not in 0..{jobs - 1}")
    lo, hi = job * n_pairs // jobs, (job + 1) * n_pairs // jobs
    return [range(s, min(s + shard_pairs, hi)) for s in range(lo, hi, shard_pairs)]


class _ShardWriter:
    """A ``.npy`` written batch by batch (header for ``capacity`` rows first, unused rows zero-padded
    at the end, so peak memory is one batch); renamed into place, then its ``.json`` written."""

    def __init__(self, directory: Path, index: int, capacity: int, latent_shape: tuple):
        self.dir, self.index, self.capacity, self.latent_shape = directory, index, capacity, tuple(latent_shape)
        self.npy = directory / f"shard_{index:05d}.npy"
        self.tmp = directory / f".shard_{index:05d}.npy.tmp"
        self.fh = open(self.tmp, "wb")
        np.lib.format.write_array_header_1_0(self.fh, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                                                       "fortran_order": False,
                                                       "shape": (capacity, 3) + self.latent_shape})
        self.rows: list[dict] = []
        self.set_aside: list[list[str]] = []
        self.pairs = 0

    def add(self, block: np.ndarray, rows: list[dict]) -> None:
        self.fh.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        self.rows.extend(rows)

    def finish(self) -> None:
        row_bytes = 3 * int(np.prod(self.latent_shape)) * 4
        zeros = bytes(row_bytes)
        for _ in range(self.capacity - len(self.rows)):
            self.fh.write(zeros)
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.npy)
        write_json({"format": FORMAT, "rows": self.rows, "n": len(self.rows), "pairs": self.pairs,
                    "set_aside": self.set_aside}, self.npy.with_suffix(".json"))


def _fingerprint(instructions_path, model_dir, settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in [Path(instructions_path)] + sorted((Path(model_dir) / "vae").glob("*")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _latent_shape(vae, resolution: int) -> tuple:
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    return (int(vae.config.latent_channels), resolution // down, resolution // down)


@torch.no_grad()
def encode_job(instructions_path, model_dir, work_dir, *, splits, copies: int, resolution: int, seed: int, aug: dict,
               job: int = 0, jobs: int = 1, shard_pairs: int = 256, batch: int = 32, num_workers: int = 2,
               settings: dict | None = None, device: str | None = None) -> dict:
    """Encode job ``job`` of ``jobs`` into ``work_dir/job_JJJ/``, resuming from its finished shards.

    Returns the job's manifest (its shards in order, rows, pairs set aside), which
    ``write_index`` combines over the jobs. ``batch`` is the number of images per VAE call.
    """
    from diffusers import AutoencoderKL

    df = read_instructions(instructions_path, splits)
    fp_settings = {"splits": list(splits), "copies": copies, "resolution": resolution, "seed": seed, "aug": aug,
                   "job": job, "jobs": jobs, "shard_pairs": shard_pairs, "format": FORMAT, **(settings or {})}
    fp = _fingerprint(instructions_path, model_dir, fp_settings)
    wd = Path(work_dir) / f"job_{job:03d}"
    stamp = wd / "fingerprint.txt"
    if wd.exists() and (not stamp.exists() or stamp.read_text().strip() != fp):
        log.info("%s holds shards of other settings or inputs: removed", wd)
        shutil.rmtree(wd)
    wd.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp + "\n")
    for stale in wd.glob(".shard_*.tmp"):  # the shard a killed job was writing
        stale.unlink()
    shards = plan_shards(len(df), jobs, job, shard_pairs)
    todo = [s for s in range(len(shards)) if not (wd / f"shard_{s:05d}.json").exists()]
    log.info("latent job %d/%d: %d pairs in %d shards, %d to encode", job, jobs, sum(map(len, shards)), len(shards),
             len(todo))
    if todo:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", local_files_only=True).to(dev).eval()
        shape = _latent_shape(vae, resolution)
        per_batch = max(1, batch // copies)  # pairs per VAE call (each gives `copies` target + condition images)
        batches, owner = [], []
        for s in todo:
            r = shards[s]
            for b0 in range(r.start, r.stop, per_batch):
                batches.append(list(range(b0, min(b0 + per_batch, r.stop))))
                owner.append(s)
        loader = DataLoader(PairCopies(df, resolution, copies, seed, aug), batch_sampler=batches,
                            num_workers=num_workers, collate_fn=_as_list, worker_init_fn=_one_thread)
        writer = None
        for s, items in zip(owner, loader):
            if writer is None or writer.index != s:
                if writer is not None:
                    writer.finish()
                writer = _ShardWriter(wd, s, len(shards[s]) * copies, shape)
            writer.pairs += len(items)
            good = [it for it in items if "error" not in it]
            writer.set_aside += [[it["pair_id"], it["error"]] for it in items if "error" in it]
            if not good:
                continue
            cur = torch.cat([it["cur"] for it in good]).to(dev)
            past = torch.cat([it["past"] for it in good]).to(dev)
            post = vae.encode(cur).latent_dist
            cond = vae.encode(past).latent_dist.mode()
            block = torch.stack([post.mean, post.std, cond], dim=1).float().cpu().numpy()
            writer.add(block, [r for it in good for r in it["rows"]])
        if writer is not None:
            writer.finish()
    vae_cfg = json.loads((Path(model_dir) / "vae" / "config.json").read_text())
    manifest = {"format": FORMAT, "job": job, "jobs": jobs, "fingerprint": fp,
                "scaling_factor": float(vae_cfg.get("scaling_factor", 1.0)), "pairs": sum(map(len, shards)),
                "shards": [], "set_aside": []}
    for s in range(len(shards)):
        meta = json.loads((wd / f"shard_{s:05d}.json").read_text())
        # relative to work_dir's parent, where the job manifests and index.json live
        manifest["shards"].append({"file": f"{Path(work_dir).name}/{wd.name}/shard_{s:05d}.npy", "n": meta["n"]})
        manifest["set_aside"] += meta["set_aside"]
    return manifest


def write_index(manifests, index_path, ledger=None) -> dict:
    """``index.json`` over the jobs' shards, and the ledger of set-aside pairs. The index lives in
    the parent of ``encode_job``'s ``work_dir`` (shard paths are relative to it)."""
    index_path = Path(index_path)
    manifests = sorted(manifests, key=lambda m: m["job"])
    if sorted(m["job"] for m in manifests) != list(range(manifests[0]["jobs"] if manifests else 0)) or not manifests:
        raise ValueError(f"{index_path}: job manifests {[m['job'] for m in manifests]} do not cover every job")
    shards = [dict(s) for m in manifests for s in m["shards"]]
    n_rows = sum(s["n"] for s in shards)
    pairs = sum(m["pairs"] for m in manifests)
    bad = [x for m in manifests for x in m["set_aside"]]
    if n_rows == 0:
        raise ValueError(f"{index_path}: no readable pairs to cache ({pairs} pairs, {len(bad)} unreadable)")
    index = {"format": FORMAT, "scaling_factor": manifests[0]["scaling_factor"], "rows": n_rows, "pairs": pairs,
             "jobs": [m["fingerprint"] for m in manifests], "shards": shards}
    write_json(index, index_path)
    if ledger is not None:
        for pid, detail in bad:
            ledger.set_aside("pair", pid, "unreadable_image", detail)
        ledger.count("cache_latents", pairs, pairs - len(bad), f"{n_rows} latents in {len(shards)} shards")
    log.info("latent cache: %d latents of %d pairs in %d shards", n_rows, pairs, len(shards))
    return index


def cache_latents(instructions_path, model_dir, out_dir, splits, copies: int, resolution: int, seed: int, aug: dict,
                  *, jobs: int = 1, shard_pairs: int = 256, batch: int = 32, num_workers: int = 2, ledger=None,
                  settings: dict | None = None) -> Path:
    """All jobs in this process, then the index: ``out_dir/index.json`` (+ ``out_dir/shards/``)."""
    out_dir = Path(out_dir)
    manifests = [encode_job(instructions_path, model_dir, out_dir / "shards", splits=splits, copies=copies,
                            resolution=resolution, seed=seed, aug=aug, job=j, jobs=jobs, shard_pairs=shard_pairs,
                            batch=batch, num_workers=num_workers, settings=settings) for j in range(jobs)]
    write_index(manifests, out_dir / INDEX_NAME, ledger)
    return out_dir / INDEX_NAME


def write_latents(out_dir, rows: list[dict], latents: np.ndarray, scaling_factor: float,
                  shard_rows: int = 1024) -> Path:
    """A cache of given latents ``(n, 3, C, h, w)`` = [target mean, target std, condition] and their
    rows (pair_id, split, copy, flip, instruction), in the layout ``encode_job`` writes (for
    benchmarks and tools that make latents another way). Returns the ``index.json``."""
    out_dir = Path(out_dir)
    wd = out_dir / "shards" / "job_000"
    wd.mkdir(parents=True, exist_ok=True)
    shards = []
    for s, i in enumerate(range(0, len(rows), shard_rows)):
        w = _ShardWriter(wd, s, min(shard_rows, len(rows) - i), latents.shape[2:])
        w.add(latents[i:i + shard_rows], rows[i:i + shard_rows])
        w.pairs = len({r["pair_id"] for r in rows[i:i + shard_rows]})
        w.finish()
        shards.append({"file": f"shards/job_000/shard_{s:05d}.npy", "n": len(w.rows)})
    manifest = {"format": FORMAT, "job": 0, "jobs": 1, "fingerprint": "given", "scaling_factor": float(scaling_factor),
                "pairs": len({r["pair_id"] for r in rows}), "shards": shards, "set_aside": []}
    write_index([manifest], out_dir / INDEX_NAME)
    return out_dir / INDEX_NAME


# ------------------------------------------------------------------------------------------------
# Reading the cache (training ranks)
# ------------------------------------------------------------------------------------------------


class LatentCache:
    """The cache of an ``index.json``, its shards memory-mapped when first read (per process, so a
    DataLoader worker maps them itself). ``rows`` is the small per-latent metadata."""

    def __init__(self, index_path):
        self.index_path = Path(index_path)
        idx = json.loads(self.index_path.read_text())
        if idx.get("format") != FORMAT:
            raise ValueError(f"{self.index_path}: latent cache format {idx.get('format')!r}, expected {FORMAT}")
        self.scaling_factor = float(idx["scaling_factor"])
        root = self.index_path.parent
        self.files = [root / s["file"] for s in idx["shards"]]
        self.rows: list[dict] = []
        self.starts = []
        for f, s in zip(self.files, idx["shards"]):
            self.starts.append(len(self.rows))
            rows = json.loads(f.with_suffix(".json").read_text())["rows"]
            if len(rows) != s["n"]:
                raise ValueError(f"{f}: {len(rows)} rows, the index says {s['n']}")
            self.rows += rows
        self._arrays: dict[int, np.ndarray] = {}

    def __len__(self):
        return len(self.rows)

    def _array(self, s: int) -> np.ndarray:
        a = self._arrays.get(s)
        if a is None:
            a = self._arrays[s] = np.load(self.files[s], mmap_mode="r")
        return a

    def latents(self, i: int) -> torch.Tensor:
        """Row ``i``: a (3, C, h, w) tensor [target mean, target std, condition], copied out of the map."""
        s = bisect_right(self.starts, i) - 1
        return torch.from_numpy(np.array(self._array(s)[i - self.starts[s]]))

    def __getstate__(self):  # DataLoader workers map the files themselves
        d = dict(self.__dict__)
        d["_arrays"] = {}
        return d
