# Views: classifier scores per image (cached, the expensive part), then the PA decision (cheap).
VIEWS_CFG = config["views"]


rule views_train:
    input:
        images=results("tables/images.parquet"),
    output:
        model=results("views/view_model.pt"),
    params:
        code=code_version("views.classifier"),
        seed=config["seed"],
        epochs=VIEWS_CFG["train_epochs"],
        max_images=VIEWS_CFG["train_max_images"],
        folds=VIEWS_CFG["folds"],
    log:
        f"{LOGS}/views_train.log",
    benchmark:
        f"{BENCH}/views_train.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/views_train.py"


rule views_score:
    input:
        unpack(_views_score_inputs),
    output:
        scores=results("views/view_scores.parquet"),
    params:
        code=code_version("views.score", "views.classifier", "views.xrv", "views.tables"),
        backend=VIEWS_CFG["backend"],
        weights_dir=VIEWS_CFG["xrv_weights_dir"],
        batch_size=VIEWS_CFG["batch_size"],
    log:
        f"{LOGS}/views_score.log",
    benchmark:
        f"{BENCH}/views_score.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/views_score.py"


rule views_pa:
    input:
        images=results("tables/images.parquet"),
        scores=results("views/view_scores.parquet"),
    output:
        pa=results("views/pa_images.parquet"),
        ledger=results("ledger/views.tsv"),
        counts=results("ledger/views.counts.tsv"),
    params:
        code=code_version("views.decide", "views.tables"),
        lateral_threshold=VIEWS_CFG["lateral_threshold"],
        use_procedure=VIEWS_CFG["use_procedure"],
    log:
        f"{LOGS}/views_pa.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/views_pa.py"


ALL_TARGETS.append(results("views/pa_images.parquet"))
LEDGERS.append(results("ledger/views.tsv"))
