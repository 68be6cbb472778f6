# The HTML report (self-contained; index.html is the same file): funnel, Table 1, montage, masks,
# loss curve, Table 2, evaluator accuracies, gallery, provenance audit. Inputs produced by other
# stages are requested only when some rule of this workflow produces them (explicit when present).
REPORT_HTML = results("report/report.html")
REPORT_OPTIONAL = {
    "table1": results("instructions/table1.csv"),
    "loss": results("model/metrics.csv"),
    "montage": results("registration/montage.png"),
    "masks_png": results("masks/pseudo_masks.png"),
    "audit": results("provenance/audit.json"),
}


rule report_variations:
    input:
        records=INFER_RECORDS,
        model=INFER_MODEL,
        masks=results("masks/pseudo_masks.npz"),
    output:
        png=report(results("report/variations.png"), caption="../docs/evaluation_variations.rst", category="Report"),
    params:
        code=code_version("evaluation", "inference.shards", "inference.rse", "masks"),
        rse=config["rse"],
        masks=config["masks"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    conda:
        "../envs/model.yaml"
    log:
        f"{LOGS}/report_variations.log",
    benchmark:
        f"{BENCH}/report_variations.tsv"
    script:
        "../workflow_scripts/report_variations.py"


rule report:
    input:
        unpack(_report_inputs),
    output:
        html=report(REPORT_HTML, caption="../docs/evaluation_report.rst", category="Report"),
        index=results("report/index.html"),
    params:
        code=code_version("evaluation"),
        gallery_pairs=config["report"]["gallery_pairs"],
    conda:
        "../envs/model.yaml"
    log:
        f"{LOGS}/report.log",
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    script:
        "../workflow_scripts/report_build.py"


ALL_TARGETS.append(REPORT_HTML)
