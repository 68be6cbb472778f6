"""``instructx2x edit``: edit one chest X-ray with an instruction, offline.

    instructx2x edit --model results/model/pipeline --image past.png \\
        --instruction "Add a moderate left pleural effusion" --out outdir/ \\
        [--user-mask M.png] [--masks results/masks/pseudo_masks.npz] [--no-rse] [--seed 0] [--steps 100] [--tau 0.1]

``--out`` is a directory (edited.png, guidance.png/.npy, mask.png, overlay.png, record.json) or a
``.png`` path for the edited image alone, with ``--guidance-map`` / ``--mask-out`` / ``--overlay``
for the others. The record (printed as JSON) says which masks were used; a fallback to the full
image is printed as a warning. The scheduler configuration and every weight come from ``--model``;
nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from instructx2x.rse import DEFAULTS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("edit", help="edit a chest X-ray with an instruction (RSE or wo-RSE)", description=__doc__,
                              formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="diffusers pipeline directory (e.g. results/model/pipeline)")
    p.add_argument("--image", required=True, help="input image (grayscale or RGB PNG/JPG; size divisible by the model's factor)")
    p.add_argument("--instruction", required=True, help='e.g. "Add a moderate left pleural effusion"')
    p.add_argument("--out", required=True, help="output directory, or a .png path for the edited image")
    p.add_argument("--user-mask", "--mask", dest="user_mask", help="PNG of the region to edit (replaces the pseudo mask)")
    p.add_argument("--masks", default="results/masks/pseudo_masks.npz", help="pseudo masks (rule `masks`)")
    p.add_argument("--no-rse", action="store_true", help="wo-RSE: the same model and sampler editing globally")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--tau", type=float, default=DEFAULTS["tau"])
    p.add_argument("--t-rel", type=int, default=DEFAULTS["t_rel"])
    p.add_argument("--image-guidance-scale", type=float, default=DEFAULTS["image_guidance_scale"])
    p.add_argument("--guidance-scale", type=float, default=DEFAULTS["guidance_scale"])
    p.add_argument("--no-laterality", action="store_true", help="do not restrict pseudo masks to the named side")
    p.add_argument("--guidance-map", help="with a .png --out: where to write the guidance map (8-bit)")
    p.add_argument("--mask-out", help="with a .png --out: where to write the binary mask")
    p.add_argument("--overlay", help="with a .png --out: where to write the overlay")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from PIL import Image

    from instructx2x.core.io import atomic_path
    from instructx2x.masks import PseudoMasks
    from instructx2x.core.images import read_gray
    from instructx2x.rse import RegionSpecificEditPipeline, save_edit

    image = read_gray(args.image)
    user_mask = read_gray(args.user_mask, check_content=False) > 127 if args.user_mask else None
    pseudo = None
    if not args.no_rse and user_mask is None:
        pseudo = PseudoMasks.load(args.masks)  # a missing file is an error, never a silent full image
    pipe = RegionSpecificEditPipeline.from_pretrained(
        args.model, pseudo_masks=pseudo, region_settings={"restrict_laterality": not args.no_laterality}, device=args.device
    )
    out = pipe(image, args.instruction, user_mask=user_mask, seed=args.seed, steps=args.steps, tau=args.tau,
               t_rel=args.t_rel, image_guidance_scale=args.image_guidance_scale, guidance_scale=args.guidance_scale,
               rse=not args.no_rse)
    if args.out.lower().endswith(".png"):
        extra = {
            args.out: out.edited,
            args.guidance_map: np.round(out.guidance * 255).astype(np.uint8),
            args.mask_out: out.mask.astype(np.uint8) * 255,
            args.overlay: out.overlay,
        }
        for path, arr in extra.items():
            if path:
                with atomic_path(path) as tmp:
                    Image.fromarray(arr).save(tmp, format="PNG")
        record = {"edited_path": args.out, "guidance_path": args.guidance_map, "mask_path": args.mask_out,
                  "overlay_path": args.overlay, "mode": out.mode, "mask_source": out.mask_source,
                  "mask_detail": out.mask_detail, "fallback": out.fallback, "categories": out.categories,
                  "relevance_constant": out.relevance_constant, **out.info}
    else:
        record = save_edit(out, Path(args.out))
    if out.fallback:
        print(f"warning: {out.mask_detail}", file=sys.stderr)
    print(json.dumps(record, indent=2, default=str))
    return 0
