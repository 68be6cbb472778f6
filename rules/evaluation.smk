# Evaluation (method §10): the Table 2 rows real / input / wo_rse / rse scored on the same pairs.
# Backend `trained` (the demo) first trains small evaluator CNNs on the training split's real images.
EVAL = config["evaluation"]
EVAL_METRICS = results("report/metrics.json")
EVAL_TABLES = [results(f"tables/{t}.parquet") for t in ("studies", "patients", "admissions")]


rule evaluation_train:
    input:
        instructions=results("instructions/instructions.parquet"),
        tables=EVAL_TABLES,
    output:
        model=results("evaluation/trained_evaluator.pt"),
        info=results("evaluation/trained_evaluator.json"),
    params:
        code=code_version("evaluation"),
        seed=config["seed"],
        epochs=EVAL["train_epochs"],
        max_images=EVAL["train_max_images"],
        labels={k: EVAL[k] for k in ("uncertain", "missing", "race_rule")},
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    conda:
        "../envs/model.yaml"
    log:
        f"{LOGS}/evaluation_train.log",
    benchmark:
        f"{BENCH}/evaluation_train.tsv"
    script:
        "../workflow_scripts/evaluation_train.py"


rule evaluation:
    input:
        unpack(_evaluation_inputs),
    output:
        metrics=report(EVAL_METRICS, caption="../docs/evaluation_table2.rst", category="Evaluation"),
        predictions=results("evaluation/predictions.parquet"),
        ledger=results("ledger/evaluation.tsv"),
        counts=results("ledger/evaluation.counts.tsv"),
    params:
        code=code_version("evaluation"),
        seed=config["seed"],
        backend=EVAL["backend"],
        weights_dir=EVAL["xrv_weights_dir"],
        splits=EVAL["splits"],
        n_boot=EVAL["bootstrap"],
        batch_size=EVAL["batch_size"],
        labels={k: EVAL[k] for k in ("uncertain", "missing", "race_rule")},
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    conda:
        "../envs/model.yaml"
    log:
        f"{LOGS}/evaluation.log",
    benchmark:
        f"{BENCH}/evaluation.tsv"
    script:
        "../workflow_scripts/evaluation_run.py"


ALL_TARGETS.extend([EVAL_METRICS, results("evaluation/predictions.parquet")])
LEDGERS.append(results("ledger/evaluation.tsv"))
