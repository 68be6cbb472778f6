# Pseudo masks (method §7): MS-CXR boxes of PA images, rescaled to the working resolution and
# united per finding; arrays for the editor, one PNG per finding and a figure for the report.
from instructx2x.masks import CATEGORIES as MASK_CATEGORIES, mask_png_name

MASKS_NPZ = results("masks/pseudo_masks.npz")
MASKS_FIGURE = results("masks/pseudo_masks.png")


# The working resolution unless the masks section sets its own.
MASKS_RESOLUTION = config["masks"]["resolution"] or config.get("registration", {}).get("resolution", 512)


rule masks:
    input:
        boxes=results("tables/mscxr_boxes.parquet"),
        pa_images=results("views/pa_images.parquet"),
    output:
        npz=MASKS_NPZ,
        pngs=[results(f"masks/{mask_png_name(c)}") for c in MASK_CATEGORIES],
        figure=report(MASKS_FIGURE, caption="../docs/masks_pseudo_masks.rst", category="Masks"),
        ledger=results("ledger/masks.tsv"),
        counts=results("ledger/masks.counts.tsv"),
    params:
        code=code_version("masks.pseudo"),
        resolution=MASKS_RESOLUTION,
    log:
        f"{LOGS}/masks.log",
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/masks_build.py"


ALL_TARGETS.extend([MASKS_NPZ, MASKS_FIGURE])
LEDGERS.append(results("ledger/masks.tsv"))
