"""Benchmark: the latent cache builder's memory is flat in the number of pairs; its throughput
against a plain loop that encodes one image at a time.

Inputs: ``N`` demo-like pairs of 128x128 PNG radiograph stand-ins (smooth background, a blob on
one side in the current image; made here, seeded) and the ``tiny`` preset of ``config.yaml``
(random weights: encoding cost does not depend on the weights), ``training.latent_copies`` copies.

- ours: ``instructx2x.training.latents.cache_latents`` (DataLoader workers read and augment,
  VAE in batches, shards written as they finish) with ``--workers`` workers and
  ``--threads`` torch threads, in a fresh process per size. Peak RSS is the main process's
  ``ru_maxrss`` (the workers' own peak is reported beside it).
- plain: the same reading, augmentation (same seeds) and VAE, one image per VAE call, in a loop,
  on the first ``--plain-pairs`` pairs, keeping the latents in lists (what the cache did before).

The peak RSS at the largest size must be within 15% of that at the smallest. The last line of
the output is JSON: ``{"pairs": [...], "peak_rss_mb": [...], "seconds": [...]}``.

Usage: nice -n 10 .venv/bin/python benchmarks/latent_cache.py --pairs 200,2000 [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Latent cache: memory flat in the number of pairs; throughput vs a one-image loop"
SIZE = 128


def make_pairs(out: Path, n: int, seed: int = 0) -> Path:
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    d = out / "img"
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        base = 90 + 40 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy) + rng.normal(0, 3, (SIZE, SIZE))
        side = "left" if i % 2 == 0 else "right"
        blob = 110 * np.exp(-(((xx - (0.72 if side == "left" else 0.28)) ** 2 + (yy - 0.6) ** 2) / 0.015))
        pp, cp = d / f"p{i}_past.png", d / f"p{i}_cur.png"
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(pp)
        Image.fromarray(np.clip(base + blob, 0, 255).astype(np.uint8)).save(cp)
        rows.append({"pair_id": f"{10000 + i}_{i}", "split": "val" if i % 10 == 9 else "train",
                     "past_image": str(pp), "current_image": str(cp), "instruction": f"add {side} pleural effusion"})
    pd.DataFrame(rows).to_parquet(out / f"instructions_{n}.parquet", index=False)
    return out / f"instructions_{n}.parquet"


def write_init(cfg: dict, out: Path) -> Path:
    from instructx2x.model.build import build_tiny, save_pipeline

    comps = build_tiny(dict(cfg["model"]["tiny"], sample_size=SIZE), ["add", "left", "right", "pleural", "effusion"],
                       out / "tok", 0)
    comps.vae.register_to_config(scaling_factor=0.5)
    save_pipeline(comps, out / "init")
    return out / "init"


def demo_config() -> dict:
    from instructx2x.core.config import load_config

    return load_config(REPO / "config.yaml")


# ------------------------------------------------------------------------------------------------
# Children
# ------------------------------------------------------------------------------------------------


def child_ours(a, cfg) -> dict:
    from instructx2x.training.latents import LatentCache, cache_latents

    t = cfg["training"]
    t0, c0 = time.perf_counter(), time.process_time()
    idx = cache_latents(a.instructions, a.init, Path(a.out), t["splits"], t["latent_copies"], SIZE, 0, t["augment"],
                        shard_pairs=t["latent_shard_pairs"], batch=t["latent_batch"], num_workers=a.workers)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(LatentCache(idx))
    return {"seconds": sec, "main_cpu_s": cpu, "latents": n, "images": 2 * n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def child_plain(a, cfg) -> dict:
    import pandas as pd
    import torch
    from diffusers import AutoencoderKL

    from instructx2x.training.data import augment, load_image
    from instructx2x.training.latents import copy_rng

    t = cfg["training"]
    aug = t["augment"]
    vae = AutoencoderKL.from_pretrained(a.init, subfolder="vae", local_files_only=True).eval()
    df = pd.read_parquet(a.instructions).head(a.plain_pairs)
    means, stds, conds, rows = [], [], [], []
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for r in df.itertuples(index=False):
            past, cur = load_image(r.past_image, SIZE), load_image(r.current_image, SIZE)
            for k in range(t["latent_copies"]):
                if k == 0:
                    p, c, text = past, cur, r.instruction
                else:
                    p, c, text, _ = augment(past, cur, r.instruction, copy_rng(0, r.pair_id, k), aug["rotation_deg"],
                                            aug["crop_scale"], aug["flip_p"])
                post = vae.encode(c[None]).latent_dist
                means.append(post.mean)
                stds.append(post.std)
                conds.append(vae.encode(p[None]).latent_dist.mode())
                rows.append(text)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": sec, "main_cpu_s": cpu, "latents": len(rows), "images": 2 * len(rows),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(kind: str, a, **kw) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--threads", str(a.threads),
           "--workers", str(a.workers), "--plain-pairs", str(a.plain_pairs)]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"{kind} failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    print(f"  {kind} {kw.get('instructions', '')}: {json.dumps(res)}", file=sys.stderr, flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="200,2000", help="comma-separated pair counts (each a fresh process)")
    ap.add_argument("--plain-pairs", type=int, default=200, help="pairs the one-image loop encodes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the encoding process")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers of ours")
    ap.add_argument("--write", action="store_true", help="replace this section of benchmarks/RESULTS.md")
    ap.add_argument("--child", choices=["ours", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--instructions", help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        import logging
        import warnings

        import torch

        torch.set_num_threads(a.threads)
        logging.disable(logging.WARNING)
        warnings.filterwarnings("ignore")
        cfg = demo_config()
        print("RESULT " + json.dumps((child_ours if a.child == "ours" else child_plain)(a, cfg)))
        return 0

    import diffusers
    import torch

    started = datetime.now(timezone.utc)
    cmd = "python benchmarks/latent_cache.py " + " ".join(argv if argv is not None else sys.argv[1:])
    sizes = [int(x) for x in a.pairs.split(",")]
    cfg = demo_config()
    tmp = Path(tempfile.mkdtemp(prefix="latent_bench_"))
    init = write_init(cfg, tmp)
    load0 = os.getloadavg()[0]
    ours = {}
    for n in sizes:
        pq = make_pairs(tmp / f"pairs_{n}", n)
        ours[n] = run_child("ours", a, instructions=pq, init=init, out=tmp / f"cache_{n}")
    plain = run_child("plain", a, instructions=tmp / f"pairs_{sizes[0]}" / f"instructions_{sizes[0]}.parquet",
                      init=init)
    load1 = os.getloadavg()[0]
    lo, hi = ours[sizes[0]]["peak_rss_mb"], ours[sizes[-1]]["peak_rss_mb"]
    growth = hi / lo - 1
    t = cfg["training"]
    u = platform.uname()
    L = [SECTION, "",
         f"- machine: {u.system} {u.release} {u.machine} ({u.node}), {os.cpu_count()} CPUs, Python "
         f"{platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}; load average "
         f"at start / end {load0:.1f} / {load1:.1f} (shared machine)",
         f"- date: {started:%Y-%m-%d %H:%M} UTC",
         f"- command: `{cmd.strip()}`",
         f"- inputs: {SIZE}x{SIZE} PNG pairs made by the benchmark, tiny preset of `config.yaml` (VAE channels "
         f"{cfg['model']['tiny']['vae_channels']}, random weights), {t['latent_copies']} copies per pair, "
         f"shards of {t['latent_shard_pairs']} pairs, VAE batch {t['latent_batch']} images; ours with "
         f"{a.workers} DataLoader worker(s) and {a.threads} torch thread(s); the plain loop {a.threads} thread(s), "
         "one image per VAE call; each run a fresh process", "",
         "| run | pairs | images encoded | seconds | images/s | main-process CPU s | peak RSS MB (main) "
         "| workers' peak RSS MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        x = ours[n]
        L.append(f"| ours | {n} | {x['images']} | {x['seconds']:.1f} | {x['images'] / x['seconds']:.0f} | "
                 f"{x['main_cpu_s']:.1f} | {x['peak_rss_mb']:.0f} | {x['workers_peak_rss_mb']:.0f} |")
    L.append(f"| plain one-image loop | {a.plain_pairs} | {plain['images']} | {plain['seconds']:.1f} | "
             f"{plain['images'] / plain['seconds']:.0f} | {plain['main_cpu_s']:.1f} | {plain['peak_rss_mb']:.0f} | - |")
    x0 = ours[sizes[0]]
    ratio = (x0["images"] / x0["seconds"]) / (plain["images"] / plain["seconds"])
    L += ["",
          f"- peak RSS at {sizes[-1]} pairs vs {sizes[0]}: {100 * growth:+.1f}% (goal within 15%: "
          f"{'met' if abs(growth) <= 0.15 else 'NOT met'})",
          f"- throughput at {sizes[0]} pairs, ours vs the one-image loop: {ratio:.2f}x images/s (wall; ours also "
          f"uses {a.workers} reader process(es), so on a loaded machine the wall ratio depends on free cores)"]
    text = "\n".join(L) + "\n"
    print(text)
    if a.write:
        replace_section(SECTION, text)
    print(json.dumps({"pairs": sizes, "peak_rss_mb": [round(ours[n]["peak_rss_mb"], 1) for n in sizes],
                      "seconds": [round(ours[n]["seconds"], 2) for n in sizes]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
