"""``instructx2x train``: prepare components, cache latents and fine-tune, outside Snakemake."""

from __future__ import annotations

import logging
from pathlib import Path


def run(args) -> int:
    from ..core.config import load_config
    from ..core.ledger import Ledger
    from .latents import cache_latents
    from .prepare import prepare
    from .train import train

    logging.basicConfig(level=logging.INFO)
    overrides = {}
    if args.pretrained:
        overrides["model"] = {"pretrained": args.pretrained}
    if args.steps:
        overrides["training"] = {"steps": args.steps}
    cfg = load_config(args.config, overrides)
    out = Path(args.out)
    res = cfg["registration"]["resolution"]
    if not (out / "init" / "model_index.json").exists():
        prepare(args.instructions, out / "init", cfg["model"], cfg["seed"], res)
    lat = out / "latents" / "index.json"
    if not lat.exists():  # resumes from the finished shards of an interrupted run
        ledger = Ledger("training")
        t = cfg["training"]
        cache_latents(args.instructions, out / "init", lat.parent, t["splits"], t["latent_copies"], res, cfg["seed"],
                      t["augment"], jobs=t["latent_jobs"], shard_pairs=t["latent_shard_pairs"],
                      batch=t["latent_batch"], num_workers=t["latent_workers"], ledger=ledger)
        ledger.write(out / "ledger.tsv", out / "ledger.counts.tsv")
    info = train(out / "init", lat, out, cfg["training"], cfg["seed"])
    print(info)
    return 0


def add_parser(subparsers) -> None:
    from instructx2x.core.cliargs import positive_int

    p = subparsers.add_parser("train", help="train the InstructPix2Pix model on an instructions.parquet",
                              description=__doc__)
    p.add_argument("--instructions", required=True, help="instructions.parquet (pair_id, split, past_image, ...)")
    p.add_argument("--out", required=True, help="output dir: init/, latents/, checkpoints/, pipeline/, metrics.csv")
    p.add_argument("--config", default="config.yaml", help="config file (sections model, training)")
    p.add_argument("--pretrained", default=None, help="local diffusers InstructPix2Pix directory (else tiny preset)")
    p.add_argument("--steps", type=positive_int, default=None, help="override training.steps")
    p.set_defaults(func=run)
