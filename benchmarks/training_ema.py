"""Benchmark: diffusers' ``EMAModel.step`` (foreach, with warm-up) against the single
``torch._foreach_lerp_`` the training module used before (no warm-up), per optimizer step.

Same parameters for both (a UNet2DConditionModel of the demo ``tiny`` preset and a mid-size one,
random weights, fp32, CPU), interleaved, median over ``--repeats`` timings of ``--inner`` updates.
Prints a Markdown section for benchmarks/RESULTS.md; ``--write`` replaces it there.

Usage: nice -n 10 .venv/bin/python benchmarks/training_ema.py [--repeats 15] [--inner 20] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from results_md import replace_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Training EMA: diffusers EMAModel (warm-up, foreach) vs one foreach lerp"


def unets(cfg):
    from diffusers import UNet2DConditionModel

    from instructx2x.model.build import tiny_unet

    tiny = tiny_unet(dict(cfg["model"]["tiny"], sample_size=16))
    mid = UNet2DConditionModel(sample_size=32, in_channels=8, out_channels=4, layers_per_block=1,
                               block_out_channels=(64, 128, 256, 256), cross_attention_dim=256, attention_head_dim=8)
    return {"demo tiny preset": tiny, "mid-size (64/128/256/256)": mid}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    import torch
    from diffusers.training_utils import EMAModel

    from instructx2x.core.config import load_config

    torch.set_num_threads(a.threads)
    started = datetime.now(timezone.utc)
    cmd = "python benchmarks/training_ema.py " + " ".join(argv if argv is not None else sys.argv[1:])
    cfg = load_config(REPO / "config.yaml")
    rows = []
    for name, unet in unets(cfg).items():
        params = list(unet.parameters())
        n = sum(p.numel() for p in params)
        ema = EMAModel(params, decay=0.9999, foreach=True)
        shadow = [p.detach().clone() for p in params]
        t = {"diffusers": [], "lerp": []}

        def run_diffusers():
            for _ in range(a.inner):
                ema.step(params)

        def run_lerp():
            with torch.no_grad():
                for _ in range(a.inner):
                    torch._foreach_lerp_(shadow, [p.detach() for p in params], 1e-4)

        for r in range(a.repeats):
            for k, f in ((("diffusers", run_diffusers), ("lerp", run_lerp)) if r % 2 == 0
                         else (("lerp", run_lerp), ("diffusers", run_diffusers))):
                c0 = time.process_time()
                f()
                t[k].append((time.process_time() - c0) / a.inner)
        md = {k: statistics.median(v) for k, v in t.items()}
        rows.append((name, n, md["lerp"], md["diffusers"]))
        print(f"  {name}: {n / 1e6:.2f} M params, lerp {md['lerp'] * 1e3:.3f} ms, diffusers "
              f"{md['diffusers'] * 1e3:.3f} ms", file=sys.stderr)
    u = platform.uname()
    L = [SECTION, "",
         f"- machine: {u.system} {u.release} {u.machine} ({u.node}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
         f"{a.threads} thread(s); load average {os.getloadavg()[0]:.1f} (shared machine)",
         f"- date: {started:%Y-%m-%d %H:%M} UTC", f"- command: `{cmd.strip()}`",
         f"- CPU time per EMA update, median of {a.repeats} interleaved timings of {a.inner} updates", "",
         "| parameters | count | foreach lerp (before) ms | diffusers EMAModel foreach ms | ratio |",
         "|---|---:|---:|---:|---:|"]
    for name, n, lerp, diff in rows:
        L.append(f"| {name} | {n / 1e6:.2f} M | {lerp * 1e3:.3f} | {diff * 1e3:.3f} | {diff / lerp:.2f} |")
    L += ["", "The EMA update is one elementwise pass over the weights per optimizer step (after a whole forward "
          "and backward pass, and with gradient accumulation once per several micro-batches); `benchmarks/"
          "training.py` measures the whole step with it."]
    text = "\n".join(L) + "\n"
    print(text)
    if a.write:
        replace_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
