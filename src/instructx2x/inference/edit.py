"""``instructx2x edit``: edit one chest X-ray with an instruction, offline.

    instructx2x edit --model results/model/pipeline --image past.png \\
        --instruction "Add a moderate left pleural effusion" --out outdir/ \\
        [--user-mask M.png] [--masks results/masks/pseudo_masks.npz] [--no-rse] [--seed 0] [--steps 100] [--tau 0.1]

``--image`` is a PNG/JPG (8 or 16 bit) or a DICOM file (windowed, MONOCHROME1 inverted); both sides
must be divisible by the model's factor (8 x the UNet's downsampling). ``--out`` is a directory
(edited.png, guidance.png/.npy, mask.png, overlay.png, difference.png, record.json) or a ``.png``
path for the edited image alone, with ``--guidance-map`` / ``--mask-out`` / ``--overlay`` /
``--difference`` for the others. The record (printed as JSON) says which masks were used; a
fallback to the full image is printed as a warning. A user mask (white = edit) must have the
image's aspect ratio and must not be empty. The scheduler configuration and every weight come from
``--model``; nothing is downloaded. ``instructx2x serve`` runs the same edit behind a web page.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from instructx2x.inference.rse import DECODES, DEFAULTS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("edit", help="edit a chest X-ray with an instruction (RSE or wo-RSE)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="diffusers pipeline directory (e.g. results/model/pipeline)")
    p.add_argument("--image", required=True, help="input image: PNG/JPG (8/16-bit, grey or RGB) or DICOM")
    p.add_argument("--instruction", required=True, help='e.g. "Add a moderate left pleural effusion"')
    p.add_argument("--out", required=True, help="output directory, or a .png path for the edited image")
    p.add_argument("--user-mask", "--mask", dest="user_mask", help="PNG of the region to edit (white; replaces the pseudo mask)")
    p.add_argument("--masks", default="results/masks/pseudo_masks.npz", help="pseudo masks (rule `masks`)")
    p.add_argument("--no-rse", action="store_true", help="wo-RSE: the same model and sampler editing globally")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--tau", type=float, default=DEFAULTS["tau"])
    p.add_argument("--t-rel", type=int, default=DEFAULTS["t_rel"])
    p.add_argument("--image-guidance-scale", type=float, default=DEFAULTS["image_guidance_scale"])
    p.add_argument("--guidance-scale", type=float, default=DEFAULTS["guidance_scale"])
    p.add_argument("--decode", choices=DECODES, default=DEFAULTS["decode"],
                   help="plain: decode the edited latents; residual: input + D(edit) - D(input) (config rse.decode)")
    p.add_argument("--no-laterality", action="store_true", help="do not restrict pseudo masks to the named side")
    p.add_argument("--guidance-map", help="with a .png --out: where to write the guidance map (8-bit)")
    p.add_argument("--mask-out", help="with a .png --out: where to write the binary mask")
    p.add_argument("--overlay", help="with a .png --out: where to write the overlay")
    p.add_argument("--difference", help="with a .png --out: where to write the difference map")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def settings_from_args(args):
    from instructx2x.inference.editor import EditSettings

    return EditSettings(instruction=args.instruction, seed=args.seed, steps=args.steps, tau=args.tau, t_rel=args.t_rel,
                        image_guidance_scale=args.image_guidance_scale, guidance_scale=args.guidance_scale,
                        rse=not args.no_rse, decode=args.decode).validate()


def write_result(result, out: str, extra_paths: dict | None = None) -> dict:
    """Write the outputs (a directory, or a .png path plus optional paths per image); returns the paths."""
    from instructx2x.core.io import atomic_path, write_json

    images = result.images()
    if out.lower().endswith(".png"):
        paths = {"edited": out, **{k: v for k, v in (extra_paths or {}).items() if v}}
    else:
        d = Path(out)
        paths = {name: str(d / f"{name}.png") for name in images}
        with atomic_path(d / "guidance.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, result.output.guidance)
        paths["guidance_npy"] = str(d / "guidance.npy")
    for name, path in paths.items():
        if name in images:
            with atomic_path(path) as tmp:
                Path(tmp).write_bytes(images[name])
    record = {**result.record, "paths": paths}
    if not out.lower().endswith(".png"):
        write_json(record, Path(out) / "record.json")
    return record


def run(args) -> int:
    from instructx2x.core.images import read_gray
    from instructx2x.inference.editor import Editor, user_mask_from_gray

    settings = settings_from_args(args)
    image = read_gray(args.image)
    user_mask = None
    if args.user_mask:
        user_mask = user_mask_from_gray(read_gray(args.user_mask, check_content=False), image.shape,
                                        f"--user-mask {args.user_mask}")
    needs_masks = settings.rse and user_mask is None
    editor = Editor(args.model, pseudo_masks=args.masks if needs_masks else None,
                    region_settings={"restrict_laterality": not args.no_laterality}, device=args.device)
    editor.check_image(image, f"--image {args.image}")
    result = editor.edit(image, settings, user_mask=user_mask)
    record = write_result(result, args.out, {"guidance": args.guidance_map, "mask": args.mask_out,
                                             "overlay": args.overlay, "difference": args.difference})
    if result.output.fallback:
        print(f"warning: {result.output.mask_detail}", file=sys.stderr)
    print(json.dumps(record, indent=2, default=str))
    return 0
