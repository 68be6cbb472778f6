"""The tiny VAE's reconstruction on held-out images, per setting (issue 15's recipe choice).

Trains ``model.build.tiny_vae`` on the train images of a finished demo run (as ``training_prepare``
does: augmented, posterior sample, ``--loss`` + 1e-4 KL) and prints every ``--every`` steps the
reconstruction MAE in grey levels (decode(encode(x).mode), as the editor decodes) on up to 30 val
images (never test/holdout). Run it on a demo of another generator seed than the default, so nothing
is chosen on the default demo's evaluation pairs. ``--write`` records the lines in benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/demo_vae.py RESULTS_DIR --setting groups=8 --setting groups=2 [--steps 300] [--write]
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

SECTION = "## Demo editor: tiny VAE reconstruction per setting (issue 15)"
DEFAULTS = {"ch": "8-16-32-32", "lc": 16, "groups": 8, "lr": 2e-3, "bs": 4, "loss": "l1"}


def one(results: Path, s: dict, steps: int, every: int, res: int) -> list[str]:
    import torch

    from instructx2x.model.build import tiny_vae
    from instructx2x.training.data import augment, load_image, read_instructions
    from instructx2x.training.prepare import reconstruction_mae

    torch.manual_seed(0)
    df = read_instructions(results / "instructions" / "instructions.parquet", ["train", "val"])
    tr, va = df[df.split == "train"], df[df.split == "val"]
    X = torch.stack([load_image(p, res) for p in sorted(set(tr.past_image) | set(tr.current_image))])
    V = torch.stack([load_image(p, res) for p in sorted(set(va.past_image) | set(va.current_image))[:30]])
    vae = tiny_vae({"vae_channels": [int(c) for c in str(s["ch"]).split("-")], "vae_latent_channels": int(s["lc"]),
                    "norm_groups": int(s["groups"]), "sample_size": res})
    opt = torch.optim.AdamW(vae.parameters(), lr=float(s["lr"]))
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    t0, out = time.time(), []
    for step in range(1, steps + 1):
        vae.train()
        x = X[torch.randint(len(X), (int(s["bs"]),), generator=g)]
        x = torch.stack([augment(b, b, "", rng, flip_p=0.5)[0] for b in x])
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        r = (rec - x).abs().mean() if s["loss"] == "l1" else torch.nn.functional.mse_loss(rec, x)
        loss = r + 1e-4 * post.kl().mean() / z[0].numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            line = (f"{', '.join(f'{k} {v}' for k, v in s.items())}: step {step}, val reconstruction MAE "
                    f"{reconstruction_mae(vae, V):.2f} grey levels on {len(V)} images ({time.time() - t0:.0f} s)")
            print(line, flush=True)
            out.append(line)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--setting", action="append", default=None, help="key=value,... over " + str(DEFAULTS))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    lines = []
    for text in a.setting or [""]:
        s = dict(DEFAULTS, **dict(p.split("=") for p in text.split(",") if p))
        lines += one(a.results, s, a.steps, a.every, a.resolution)
    if a.write:
        cmd = " ".join(["benchmarks/demo_vae.py", str(a.results), f"--steps {a.steps}"]
                       + [f"--setting {t}" for t in (a.setting or [])])
        block = (f"{SECTION}\n\nMachine: {platform.machine()}, {platform.system()}; date "
                 f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}; command `.venv/bin/python {cmd} --write` "
                 "(shared 2-core machine: seconds are upper bounds).\n\n" + "".join(f"- {ln}.\n" for ln in lines))
        replace_section(SECTION, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
