"""The ``register`` command: align MOVING to FIXED with the pipeline's registration settings."""

from __future__ import annotations

from instructx2x.registration.algorithm import RegistrationSettings, register_files, save_png

def add_parser(subparsers) -> None:
    from instructx2x.core.cliargs import positive_int

    p = subparsers.add_parser(
        "register",
        help="align MOVING to FIXED with the pipeline's registration settings",
        description="Register MOVING (current) to FIXED (past) with the pipeline's settings (bilateral "
        "filter for estimation, similarity transform, Mattes MI) and write MOVING resampled into FIXED's frame. "
        "Images may differ in size: each keeps its own pixel grid (square pixels assumed) and the transform's "
        "scale absorbs a different pixel size; the start assumes the same pixel size (scale 1) and, when the "
        "longer sides differ by more than registration.start_scales reach, also the same field of view "
        "(docs/registration.md). Unusable images: one line on stderr, exit 2.",
    )
    p.add_argument("fixed")
    p.add_argument("moving")
    p.add_argument("--out", required=True, help="aligned moving image (PNG) at the working resolution")
    p.add_argument("--config", default=None, help="config.yaml whose `registration` section to use (default: the repository's config.yaml)")
    p.add_argument("--resolution", type=positive_int, default=None, help="override registration.resolution")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cli_register)


def _cli_register(args) -> int:
    import json

    from instructx2x.core.config import REPO_ROOT, load_config
    from instructx2x.registration.gate import GateSettings, gate_flag, gate_reason

    # the override goes through the config's validation (schema minimum, multiple of 8)
    overrides = {"registration": {"resolution": args.resolution}} if args.resolution else None
    cfg = load_config(args.config or REPO_ROOT / "config.yaml", overrides)
    section = dict(cfg["registration"])
    s = RegistrationSettings.from_config(section, seed=cfg["seed"])
    g = GateSettings.from_config(section)
    # an unreadable (constant, too small, bomb, undecodable) or unusable image raises an InputError:
    # instructx2x.cli.main prints it as one line on stderr and exits 2
    res, _, aligned = register_files(args.fixed, args.moving, s)
    save_png(aligned, args.out)
    row = {"status": "ok", **res.as_dict()}
    reason = gate_reason(row, g)
    out = {
        "angle_deg": res.angle_deg, "scale": res.scale, "tx": res.tx, "ty": res.ty, "mi": res.mi,
        "accepted": reason == "", "mirror_suspected": reason == "mirror suspected",
        "reason": reason or "kept", "flag": gate_flag(row, g), "mirror_mi": res.mirror_mi, "ncc": res.ncc,
        "structure_ncc": res.structure_ncc, "resolution": s.resolution,
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for k, v in out.items():
            print(f"{k}\t{v}")
    return 0
