# Pairs: Medical-Diff-VQA difference rows, one PA image per study, chronology flag.


rule pairs:
    input:
        vqa=results("tables/vqa.parquet"),
        images=results("tables/images.parquet"),
        pa=results("views/pa_images.parquet"),
    output:
        pairs=results("pairs/pairs.parquet"),
        ledger=results("ledger/pairs.tsv"),
        counts=results("ledger/pairs.counts.tsv"),
    params:
        code=code_version("pairs", "views.tables"),
        require_chronological=config["pairs"]["require_chronological"],
    log:
        f"{LOGS}/pairs.log",
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/pairs_build.py"


ALL_TARGETS.append(results("pairs/pairs.parquet"))
LEDGERS.append(results("ledger/pairs.tsv"))
