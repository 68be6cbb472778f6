"""Edit success of a trained demo editor on its VAL pairs (never test/holdout), per sampler setting.

The pipeline's inference edits the test and holdout pairs; a choice of sampler settings (DDIM steps,
guidance scales) must not be made on them. This edits the val pairs of a finished run with the
model, pseudo masks and seeds the inference stage uses, once per setting, and reports per mode the
median distance ratio (mean |edit - target| / mean |input - target|; inside the RSE edit mask for
RSE, whole image for wo-RSE) and the share of pairs closer to the target than the input, plus the
seconds per edit. ``--write`` records them in benchmarks/RESULTS.md.

The decoding (``decode=plain|residual``) is a setting too. ``--oracle`` adds, per decoding, what a
perfect latent edit (the target's own latents) would score: the bound the VAE leaves.

Usage: .venv/bin/python benchmarks/demo_val_edits.py RESULTS_DIR [--setting steps=5,igs=1.5,gs=1.5,decode=residual ...]
       [--oracle] [--write]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_md import replace_section  # noqa: E402

SECTION = "## Demo editor: sampler settings on val pairs (issue 15)"


def run(results: Path, settings: list[dict], seed: int, threads: int) -> list[str]:
    import torch

    from instructx2x.core.config import load_config
    from instructx2x.core.images import read_gray
    from instructx2x.evaluation.edit_success import distance_ratio
    from instructx2x.inference.rse import RegionSpecificEditPipeline
    from instructx2x.inference.shards import load_operation_dicts, pair_seed, read_instructions
    from instructx2x.masks import PseudoMasks

    torch.set_num_threads(threads)
    cfg = load_config(ROOT / "config.yaml")
    mc = cfg["masks"]
    region = {k: mc[k] for k in ("restrict_laterality", "restrict_zone", "patient_left_on_image", "midline", "zones")
              if k in mc}
    pipe = RegionSpecificEditPipeline.from_pretrained(results / "model" / "pipeline",
                                                      pseudo_masks=PseudoMasks.load(results / "masks" / "pseudo_masks.npz"),
                                                      region_settings=region)
    df = read_instructions(results / "instructions" / "instructions.parquet", ["val"])
    lines = []
    for s in settings:
        ratios = {"rse": [], "wo_rse": []}
        t0 = time.time()
        for r in df.itertuples(index=False):
            img, tgt = read_gray(r.past_image), read_gray(r.current_image)
            ops = load_operation_dicts(r.operations)
            for mode in ratios:
                out = pipe(img, str(r.instruction), operations=ops, seed=pair_seed(r.pair_id, seed), rse=mode == "rse",
                           steps=s["steps"], image_guidance_scale=s["igs"], guidance_scale=s["gs"],
                           tau=cfg["rse"]["tau"], t_rel=cfg["rse"]["t_rel"], decode=s["decode"])
                ratios[mode].append(distance_ratio(out.edited, img, tgt, out.mask if mode == "rse" else None)["ratio"])
        per_edit = (time.time() - t0) / max(1, 2 * len(df))
        parts = []
        for mode, label in (("rse", "RSE (inside the mask)"), ("wo_rse", "wo-RSE (whole image)")):
            v = np.array(ratios[mode], float)
            v = v[np.isfinite(v)]
            parts.append(f"{label}: median ratio {np.median(v):.2f}, {100 * np.mean(v < 1):.0f}% of pairs closer")
        line = (f"steps {s['steps']}, image guidance {s['igs']}, text guidance {s['gs']}, {s['decode']} decoding: "
                f"{len(df)} val pairs; "
                + "; ".join(parts) + f"; {per_edit:.2f} s per edit")
        print(line, flush=True)
        lines.append(line)
    return lines


def oracle(results: Path) -> list[str]:
    """A perfect latent edit: the target's own latents, decoded plainly and residually, whole image."""
    import torch

    from instructx2x.core.images import read_gray
    from instructx2x.evaluation.edit_success import distance_ratio
    from instructx2x.inference.rse import RegionSpecificEditPipeline, to_uint8
    from instructx2x.inference.shards import read_instructions

    pipe = RegionSpecificEditPipeline.from_pretrained(results / "model" / "pipeline")
    df = read_instructions(results / "instructions" / "instructions.parquet", ["val"])
    ratios = {"plain": [], "residual": []}
    with torch.no_grad():
        for r in df.itertuples(index=False):
            img, tgt = read_gray(r.past_image), read_gray(r.current_image)
            d_in = pipe.vae.decode(pipe.encode_image(img), return_dict=False)[0]
            d_tgt = pipe.vae.decode(pipe.encode_image(tgt), return_dict=False)[0]
            plain = to_uint8(d_tgt)[0]
            x_in = torch.from_numpy(img).float().div(127.5).sub(1.0)
            residual = to_uint8((x_in + (d_tgt - d_in).mean(dim=1)[0])[None, None])[0]
            ratios["plain"].append(distance_ratio(plain, img, tgt, None)["ratio"])
            ratios["residual"].append(distance_ratio(residual, img, tgt, None)["ratio"])
    lines = []
    for dec, v in ratios.items():
        v = np.array(v, float)
        lines.append(f"perfect latent edit (the target's latents), {dec} decoding: {len(v)} val pairs; whole image: "
                     f"median ratio {np.median(v):.2f}, {100 * np.mean(v < 1):.0f}% of pairs closer")
        print(lines[-1], flush=True)
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--setting", action="append", default=None, help="steps=N,igs=X,gs=Y (repeatable)")
    ap.add_argument("--seed", type=int, default=1234, help="the master seed of the run (pair seeds derive from it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--oracle", action="store_true", help="also score a perfect latent edit per decoding")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    settings = []
    for text in a.setting or ["steps=20,igs=1.5,gs=7.5"]:
        kv = dict(p.split("=") for p in text.split(","))
        settings.append({"steps": int(kv.get("steps", 20)), "igs": float(kv.get("igs", 1.5)), "gs": float(kv.get("gs", 7.5)),
                         "decode": kv.get("decode", "plain")})
    lines = (oracle(a.results) if a.oracle else []) + run(a.results, settings, a.seed, a.threads)
    if a.write:
        cmd = " ".join(["benchmarks/demo_val_edits.py", str(a.results)] + [f"--setting {s}" for s in (a.setting or [])]
                       + (["--oracle"] if a.oracle else []))
        block = (f"{SECTION}\n\nMachine: {platform.machine()}, {platform.system()}; date "
                 f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}; command `.venv/bin/python {cmd} --write` "
                 f"(a shared 2-core machine: the seconds are upper bounds).\n\n" + "".join(f"- {ln}.\n" for ln in lines))
        replace_section(SECTION, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
