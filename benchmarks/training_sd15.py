"""Benchmark: what the paper's run costs, measured with SD-1.5-size components (random weights).

Every measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own:

1. ``load``: a random-weight SD-1.5-size InstructPix2Pix directory (UNet 320/640/1280/1280 with 8
   input channels, CLIP-L-size text encoder, SD VAE; fp32 safetensors, built by a child) loaded by
   ``instructx2x.model.build.load_pretrained`` with ``low_cpu_mem_usage=False`` (what diffusers
   does when ``accelerate`` is missing: random init first, then the checkpoint) and ``True`` (ours).
2. ``step``: one training step of the SD-1.5-size UNet on the CPU: 32x32 latents, batch 1,
   gradient checkpointing, fp32, MSE on epsilon, backward, grad clip, AdamW (``foreach=False``: the
   multi-tensor variant allocates another full copy of the weights). Guarded: it runs only when
   ``MemAvailable`` exceeds what it needs, and otherwise says so.
3. ``vae``: the SD VAE encoding one 512x512 image on the CPU (the latent cache's work per image).
4. ``flops``: the FLOPs of one training sample at 64x64 latents (the paper's 512x512) with gradient
   checkpointing, and of one VAE encode at 512x512, counted by ``torch.utils.flop_counter`` on the
   meta device (no memory, no time).
5. ``cuda`` (only when CUDA is available): steps/s and ``torch.cuda.max_memory_allocated`` at batch
   1, 8 and 32, bf16 autocast + gradient checkpointing, 64x64 latents, AdamW (foreach) and the EMA
   (diffusers ``EMAModel``, foreach) as the training module runs them. Without CUDA the output says
   "not measured".

From these: the paper's run (6,500 optimizer steps x batch 576 on 8 A100s) in GPU-hours (from the
CUDA samples/s when measured; otherwise from the counted FLOPs at stated A100 bf16 peak and
utilisation assumptions, labelled as such), and the latent cache of 19,204 training pairs (size
exact from the layout, time from the measured CPU encode and the counted FLOPs).

Prints a Markdown section for benchmarks/RESULTS.md; ``--write`` replaces it there and rewrites
the generated cost block of README.md (between its ``cost-estimate`` markers) and writes
``benchmarks/training_sd15.json``.

Usage: nice -n 10 .venv/bin/python benchmarks/training_sd15.py [--threads 1] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Training at the paper's scale: SD-1.5-size load, step, FLOPs and the run's cost"
README_BEGIN, README_END = "<!-- cost-estimate:begin (benchmarks/training_sd15.py --write) -->", "<!-- cost-estimate:end -->"
JSON_OUT = REPO / "benchmarks" / "training_sd15.json"

# The paper's run (seeds/000, §implementation): 8 A100 GPUs, 6,500 steps, batch 576; the cache
# holds the 19,204 training pairs in `latent_copies` copies at 512x512 (64x64 latents).
PAPER = {"steps": 6500, "batch": 576, "gpus": 8, "pairs": 19204, "copies": 4, "latent_hw": 64}
# Assumptions of the FLOP-based estimate (used only when no CUDA measurement exists): the A100's
# dense bf16 tensor-core peak (NVIDIA A100 datasheet) and a range of model FLOP utilisation.
A100_BF16_PEAK = 312e12
MFU_RANGE = (0.3, 0.5)

UNET_CFG = dict(sample_size=64, in_channels=8, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
VAE_CFG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               layers_per_block=2, sample_size=512, scaling_factor=0.18215)
TEXT_CFG = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------------------------
# Children
# ------------------------------------------------------------------------------------------------


def child_build(a) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from instructx2x.model.build import Components, make_scheduler, save_pipeline
    from instructx2x.model.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(["add", "remove", "left", "right", "pleural", "effusion"], 77, Path(a.dir) / "_tok")
    comps = Components(UNet2DConditionModel(**UNET_CFG), AutoencoderKL(**VAE_CFG),
                       CLIPTextModel(CLIPTextConfig(**TEXT_CFG)), tok, make_scheduler())
    n = {k: sum(p.numel() for p in getattr(comps, k).parameters()) for k in ("unet", "vae", "text_encoder")}
    save_pipeline(comps, Path(a.dir) / "pipeline")
    shutil.rmtree(Path(a.dir) / "_tok")
    size = sum(f.stat().st_size for f in (Path(a.dir) / "pipeline").rglob("*") if f.is_file())
    return {"params": n, "disk_mb": size / 2**20}


def child_load(a) -> dict:
    from instructx2x.model.build import load_pretrained

    import torch

    rss0 = _maxrss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    comps = load_pretrained(Path(a.dir) / "pipeline", low_cpu_mem_usage=bool(a.low))
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_load = _maxrss_mb()
    params = [p for m in (comps.unet, comps.vae, comps.text_encoder) for p in m.parameters()]
    with torch.no_grad():  # first use: safetensors pages that were only mapped are read now
        total = float(sum(p.double().sum() for p in params))
    return {"seconds": sec, "cpu_s": cpu, "peak_rss_mb": peak_load, "peak_rss_after_use_mb": _maxrss_mb(),
            "rss_after_imports_mb": rss0, "weights_mb": sum(p.numel() for p in params) * 4 / 2**20,
            "low_cpu_mem_usage": bool(a.low), "checksum": total}


def child_step(a) -> dict:
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET_CFG).train()
    unet.enable_gradient_checkpointing()
    n = sum(p.numel() for p in unet.parameters())
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-2, foreach=False)
    g = torch.Generator().manual_seed(0)
    hw = a.latent_hw
    wall, cpu = [], []
    for _ in range(a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        latents = torch.randn(1, 4, hw, hw, generator=g)
        cond = torch.randn(1, 4, hw, hw, generator=g)
        text = torch.randn(1, 77, 768, generator=g)
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, 1000, (1,), generator=g)
        noisy = 0.7 * latents + 0.7 * noise
        pred = unet(torch.cat([noisy, cond], dim=1), t, encoder_hidden_states=text).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"params": n, "step_s": wall, "step_cpu_s": cpu, "peak_rss_mb": _maxrss_mb(), "latent_hw": hw,
            "threads": torch.get_num_threads()}


def child_vae(a) -> dict:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CFG).eval()
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    wall, cpu = [], []
    with torch.no_grad():
        for _ in range(a.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            vae.encode(x).latent_dist.mode()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"encode_s": wall, "encode_cpu_s": cpu, "peak_rss_mb": _maxrss_mb(), "threads": torch.get_num_threads()}


def count_flops() -> dict:
    """FLOPs of one training sample (64x64 latents, gradient checkpointing: forward, recomputed
    forward, backward) and of one 512x512 VAE encode, on the meta device."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    with torch.device("meta"):
        unet = UNet2DConditionModel(**UNET_CFG).train()
        vae = AutoencoderKL(**VAE_CFG).eval()
    for ckpt in (False, True):
        if ckpt:
            unet.enable_gradient_checkpointing()
        for hw in (32, 64):
            x = torch.randn(1, 8, hw, hw, device="meta")
            text = torch.randn(1, 77, 768, device="meta")
            t = torch.zeros(1, dtype=torch.long, device="meta")
            with FlopCounterMode(display=False) as fc:
                pred = unet(x, t, encoder_hidden_states=text).sample
                F.mse_loss(pred, torch.zeros_like(pred)).backward()
            out[f"unet_train_sample_{hw}{'_ckpt' if ckpt else ''}"] = fc.get_total_flops()
            unet.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        vae.encode(torch.randn(1, 3, 512, 512, device="meta")).latent_dist.mode()
    out["vae_encode_512"] = fc.get_total_flops()
    return out


def child_cuda(a) -> dict:
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel
    from diffusers.training_utils import EMAModel

    dev = torch.device("cuda")
    res = {"device": torch.cuda.get_device_name(0)}
    for b in (1, 8, 32):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**UNET_CFG).to(dev).train()
        unet.enable_gradient_checkpointing()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-2, foreach=True)
        ema = EMAModel(unet.parameters(), decay=0.9999, foreach=True)
        try:
            times = []
            for i in range(2 + a.steps):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    x = torch.randn(b, 8, 64, 64, device=dev)
                    noise = torch.randn(b, 4, 64, 64, device=dev)
                    text = torch.randn(b, 77, 768, device=dev)
                    t = torch.randint(0, 1000, (b,), device=dev)
                    pred = unet(x, t, encoder_hidden_states=text).sample
                    loss = F.mse_loss(pred.float(), noise)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                ema.step(unet.parameters())
                torch.cuda.synchronize()
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            times.sort()
            res[f"b{b}"] = {"step_s": times[len(times) // 2], "samples_s": b / times[len(times) // 2],
                            "max_memory_allocated_mb": torch.cuda.max_memory_allocated() / 2**20}
        except torch.OutOfMemoryError as e:
            res[f"b{b}"] = {"error": f"out of memory: {str(e)[:120]}"}
        del unet, opt, ema
    return res


CHILDREN = {"build": child_build, "load": child_load, "step": child_step, "vae": child_vae, "cuda": child_cuda}


# ------------------------------------------------------------------------------------------------
# Parent
# ------------------------------------------------------------------------------------------------


def run_child(name: str, a, *extra) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--threads", str(a.threads), *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1")
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"{name} failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    print(f"  {name} {' '.join(extra)}: {json.dumps(res)[:300]} ({time.time() - t0:.0f} s)", file=sys.stderr,
          flush=True)
    return res


def machine() -> str:
    import diffusers
    import torch

    u = platform.uname()
    return (f"{u.system} {u.release} {u.machine} ({u.node}), {os.cpu_count()} CPUs, "
            f"{_mem_available_mb() / 1024:.1f} GiB available at start, Python {platform.python_version()}, "
            f"torch {torch.__version__}, diffusers {diffusers.__version__}")


def git_commit() -> str:
    p = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return p.stdout.strip() or "unknown"


def estimate(r: dict) -> dict:
    """The paper's run and latent cache from the measurements (see the module docstring)."""
    samples = PAPER["steps"] * PAPER["batch"]
    f = r["flops"]
    est = {"samples": samples, "train_flops": samples * f["unet_train_sample_64_ckpt"]}
    est["gpu_hours_flops"] = [est["train_flops"] / (A100_BF16_PEAK * m) / 3600 for m in MFU_RANGE]
    cuda = r.get("cuda") or {}
    best = [cuda[k]["samples_s"] for k in ("b32", "b8", "b1") if k in cuda and "samples_s" in cuda[k]]
    if best:
        est["gpu_hours_measured"] = samples / best[0] / 3600
    n_img = PAPER["pairs"] * PAPER["copies"] * 2  # target + condition image per cached copy
    per_latent = 4 * PAPER["latent_hw"] ** 2 * 4  # 4 channels, float32
    est["cache_images"] = n_img
    est["cache_bytes"] = PAPER["pairs"] * PAPER["copies"] * 3 * per_latent  # target mean + std, condition
    if r.get("vae"):  # CPU time, not wall: the shared machine's load inflates wall time
        enc = min(r["vae"]["encode_cpu_s"])
        est["cache_cpu_core_hours"] = n_img * enc / 3600
    est["cache_gpu_hours_flops"] = [n_img * f["vae_encode_512"] / (A100_BF16_PEAK * m) / 3600 for m in MFU_RANGE]
    return est


def render(r: dict, cmd: str, started: datetime) -> tuple[str, str]:
    est = r["estimate"]
    build, lo, hi = r["build"], r["load_low"], r["load_plain"]
    L = [SECTION, "",
         f"- machine: {r['machine']}; torch threads {r['threads']}; load average at start / end "
         f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f} (shared machine)",
         f"- date: {started:%Y-%m-%d %H:%M} UTC; commit {r['commit']}",
         f"- command: `{cmd}`",
         f"- components (random weights, fp32 safetensors, {build['disk_mb'] / 1024:.2f} GiB on disk): UNet "
         f"{build['params']['unet'] / 1e6:.0f} M parameters (SD-1.5 layout, 8 input channels), text encoder "
         f"{build['params']['text_encoder'] / 1e6:.0f} M (CLIP-L size), VAE {build['params']['vae'] / 1e6:.0f} M "
         "(SD layout); every measurement in a fresh process", "",
         "### Pipeline load (`instructx2x.model.build.load_pretrained`)", "",
         "| low_cpu_mem_usage | peak RSS MB, load | peak RSS MB, after reading every weight once | RSS after imports MB "
         "| weights MB | load wall s (CPU s) | peak RSS ratio (load) |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    for name, x in (("False (what diffusers does without accelerate)", hi), ("True (ours, accelerate installed)", lo)):
        L.append(f"| {name} | {x['peak_rss_mb']:.0f} | {x['peak_rss_after_use_mb']:.0f} | "
                 f"{x['rss_after_imports_mb']:.0f} | {x['weights_mb']:.0f} | {x['seconds']:.1f} ({x['cpu_s']:.1f}) | "
                 f"{x['peak_rss_mb'] / hi['peak_rss_mb']:.2f} |")
    L += ["", "diffusers 0.42 builds the model under `no_init_weights()` in both modes (no random initialisation) and "
          "keeps the safetensors weights memory-mapped until they are first read, so the load itself does not hold "
          "the weights twice with or without accelerate; the second column is the resident size once every weight "
          "has been read (as the first training step does)."]
    L += ["", "### One training step of the SD-1.5-size UNet on the CPU", ""]
    st = r.get("step")
    if st and "step_s" in st:
        L += [f"32x32 latents, batch 1, gradient checkpointing, fp32, grad clip, AdamW (foreach=False), "
              f"{st['threads']} torch thread(s){'; ' + st['measured'] if 'measured' in st else ''}. The CPU time "
              "is the process's own; the wall time includes waiting for the shared machine's cores:", "",
              "| step | wall s | CPU s |", "|---:|---:|---:|"]
        for i, (w, c) in enumerate(zip(st["step_s"], st["step_cpu_s"]), 1):
            L.append(f"| {i} | {w:.1f} | {c:.1f} |")
        L += ["", f"- peak RSS {st['peak_rss_mb']:.0f} MB ({st['params'] / 1e6:.0f} M parameters: weights + "
              f"gradients + 2 AdamW moments = {st['params'] * 16 / 2**20:.0f} MB; the EMA copy, "
              f"{st['params'] * 4 / 2**20:.0f} MB more, is not in this step); step 1 also allocates the AdamW state"]
    else:
        L.append(f"- not measured: {st.get('skipped') if st else 'not run'}")
    v = r.get("vae")
    if v:
        L.append(f"- SD VAE encode of one 512x512 image on the CPU ({v['threads']} thread(s)): CPU "
                 + ", ".join(f"{s:.1f}" for s in v["encode_cpu_s"]) + " s (wall "
                 + ", ".join(f"{s:.1f}" for s in v["encode_s"]) + " s)")
    f = r["flops"]
    L += ["", "### FLOPs (counted on the meta device, `torch.utils.flop_counter`)", "",
          "| what | GFLOP |", "|---|---:|"]
    for k, name in (("unet_train_sample_32", "UNet training sample, 32x32 latents"),
                    ("unet_train_sample_32_ckpt", "same, gradient checkpointing"),
                    ("unet_train_sample_64", "UNet training sample, 64x64 latents (512x512)"),
                    ("unet_train_sample_64_ckpt", "same, gradient checkpointing"),
                    ("vae_encode_512", "VAE encode, 512x512")):
        L.append(f"| {name} | {f[k] / 1e9:.0f} |")
    L += ["", "### CUDA: steps/s and torch.cuda.max_memory_allocated (bf16 autocast, gradient checkpointing, "
          "64x64 latents, AdamW + EMA foreach)", ""]
    cuda = r.get("cuda")
    if cuda:
        L += [f"Device: {cuda['device']}", "", "| batch | s/step | samples/s | max_memory_allocated MB |",
              "|---:|---:|---:|---:|"]
        for b in (1, 8, 32):
            x = cuda.get(f"b{b}", {})
            if "error" in x:
                L.append(f"| {b} | {x['error']} | | |")
            else:
                L.append(f"| {b} | {x['step_s']:.3f} | {x['samples_s']:.2f} | {x['max_memory_allocated_mb']:.0f} |")
    else:
        L.append("- not measured: no CUDA device on this machine (the same command measures it on a CUDA machine)")
    L += ["", "### The paper's run, from these numbers", ""] + cost_lines(r)
    section = "\n".join(L) + "\n"
    readme = "\n".join([README_BEGIN, "", f"Generated by `{cmd}` on {started:%Y-%m-%d} (commit {r['commit']}); "
                        "full numbers in benchmarks/RESULTS.md.", ""] + cost_lines(r) + ["", README_END])
    return section, readme


def cost_lines(r: dict) -> list[str]:
    est, f = r["estimate"], r["flops"]
    lo, hi = r["load_low"], r["load_plain"]
    L = [f"- Training: {PAPER['steps']:,} steps x batch {PAPER['batch']} = {est['samples']:,} samples x "
         f"{f['unet_train_sample_64_ckpt'] / 1e12:.2f} TFLOP per sample (64x64 latents, gradient checkpointing; "
         f"counted) = {est['train_flops'] / 1e18:.1f} EFLOP."]
    if "gpu_hours_measured" in est:
        L.append(f"  Measured on {r['cuda']['device']}: {est['gpu_hours_measured']:.0f} GPU-hours "
                 f"({est['gpu_hours_measured'] / PAPER['gpus']:.1f} h on {PAPER['gpus']} such GPUs, linear DDP scaling "
                 "assumed).")
    else:
        L.append(f"  GPU speed not measured (no CUDA device here); at an A100's dense bf16 peak of "
                 f"{A100_BF16_PEAK / 1e12:.0f} TFLOP/s and an assumed {MFU_RANGE[0]:.0%}-{MFU_RANGE[1]:.0%} "
                 f"utilisation: {est['gpu_hours_flops'][1]:.0f}-{est['gpu_hours_flops'][0]:.0f} A100-hours, "
                 f"{est['gpu_hours_flops'][1] / PAPER['gpus']:.1f}-{est['gpu_hours_flops'][0] / PAPER['gpus']:.1f} h "
                 f"on the paper's {PAPER['gpus']} A100s (an estimate, not a measurement).")
    st = r.get("step")
    if st and "step_s" in st:
        L.append(f"- On a CPU: one step of the SD-1.5-size UNet at 32x32 latents, batch 1, gradient checkpointing "
                 f"took {min(st['step_cpu_s']):.0f} CPU-seconds ({st['threads']} thread) and "
                 f"{st['peak_rss_mb'] / 1024:.1f} GiB peak RSS (weights, gradients and AdamW state in fp32; the EMA "
                 "copy is 3.2 GiB more): CPU training at the paper's scale is not an option.")
    L.append(f"- Latent cache of {PAPER['pairs']:,} training pairs x {PAPER['copies']} copies at 512x512: "
             f"{est['cache_images']:,} VAE encodes; {est['cache_bytes'] / 2**30:.1f} GiB of float32 latents "
             "(target mean + std, condition; exact from the layout), memory-mapped by the training ranks. Time: "
             + (f"{est['cache_cpu_core_hours']:.0f} CPU core-hours (measured encode time per image); " if
                "cache_cpu_core_hours" in est else "")
             + f"{est['cache_gpu_hours_flops'][1] * 60:.0f}-{est['cache_gpu_hours_flops'][0] * 60:.0f} A100-minutes "
             f"by FLOPs ({f['vae_encode_512'] / 1e12:.2f} TFLOP per encode, same assumptions), split over "
             "`training.latent_jobs` jobs.")
    L.append(f"- Loading the SD-1.5-size pipeline ({lo['weights_mb'] / 1024:.1f} GiB of fp32 weights): peak RSS "
             f"{lo['peak_rss_mb'] / 1024:.1f} GiB with `low_cpu_mem_usage` (accelerate) vs "
             f"{hi['peak_rss_mb'] / 1024:.1f} GiB without, {lo['peak_rss_after_use_mb'] / 1024:.1f} vs "
             f"{hi['peak_rss_after_use_mb'] / 1024:.1f} GiB once every weight has been read: diffusers 0.42 no longer "
             "doubles the load's memory without accelerate (it skips random initialisation either way).")
    return L


def replace_readme_block(block: str, path: Path = REPO / "README.md") -> None:
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{path}: no '{README_BEGIN}' ... '{README_END}' block to replace")
    a, b = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    path.write_text(text[:a] + block + text[b:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the CPU children")
    ap.add_argument("--steps", type=int, default=2, help="CPU steps (and VAE encodes) per child")
    ap.add_argument("--cuda-steps", type=int, default=5, help="timed CUDA steps per batch size")
    ap.add_argument("--reuse-step", action="store_true",
                    help="take the CPU step (14 GiB) from the recorded benchmarks/training_sd15.json instead of "
                         "running it again (the section says when it was measured)")
    ap.add_argument("--keep", default=None, help="build the pipeline here and keep it (default: a temp dir)")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md, README.md and the JSON")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--low", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--latent-hw", type=int, default=32, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        import logging
        import warnings

        import torch

        torch.set_num_threads(a.threads)
        logging.disable(logging.WARNING)
        warnings.filterwarnings("ignore")
        print("RESULT " + json.dumps(CHILDREN[a.child](a)))
        return 0

    started = datetime.now(timezone.utc)
    cmd = "python benchmarks/training_sd15.py " + " ".join(argv if argv is not None else sys.argv[1:])
    r = {"machine": machine(), "threads": a.threads, "commit": git_commit(), "date": f"{started:%Y-%m-%d %H:%M} UTC",
         "load_average_start": os.getloadavg()}
    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="sd15_bench_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if not (tmp / "pipeline" / "model_index.json").exists():
            r["build"] = run_child("build", a, "--dir", str(tmp))
        else:
            r["build"] = json.loads((tmp / "build.json").read_text())
        (tmp / "build.json").write_text(json.dumps(r["build"]))
        r["load_plain"] = run_child("load", a, "--dir", str(tmp), "--low", "0")
        r["load_low"] = run_child("load", a, "--dir", str(tmp), "--low", "1")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    n = r["build"]["params"]["unet"]
    need_mb = n * 16 / 2**20 + 3000  # weights, grads, 2 moments + activations and imports
    avail = _mem_available_mb()
    if a.reuse_step:
        old = json.loads(JSON_OUT.read_text())
        r["step"] = dict(old["step"], measured=f"measured on {old['date']} (commit {old['commit']}), reused")
    elif avail > need_mb + 2000:
        r["step"] = run_child("step", a, "--steps", str(a.steps), "--latent-hw", "32")
    else:
        r["step"] = {"skipped": f"needs ~{need_mb / 1024:.1f} GiB, {avail / 1024:.1f} GiB available"}
    r["vae"] = run_child("vae", a, "--steps", str(a.steps))
    r["flops"] = count_flops()
    import torch

    r["cuda"] = run_child("cuda", a, "--steps", str(a.cuda_steps)) if torch.cuda.is_available() else None
    r["load_average_end"] = os.getloadavg()
    r["estimate"] = estimate(r)
    section, readme = render(r, cmd.strip(), started)
    print(section)
    if a.write:
        replace_section(SECTION, section)
        replace_readme_block(readme)
        JSON_OUT.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
