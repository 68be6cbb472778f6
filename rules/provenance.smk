# Provenance. Every job records its own lineage when it succeeds (workflow_scripts/_job.py ->
# results/provenance/lineage/jobs/<rule>/<wildcards>.json: inputs and outputs with SHA-256, code
# version, params, config and package set). This rule adds the resolved config, package versions,
# git commit, raw manifest and a lineage table, and audits the results directory against the
# lineage; the report (made after it) shows the audit. `instructx2x audit results` re-checks it all.

PROVENANCE_FILES = [
    results("provenance/config.resolved.yaml"),
    results("provenance/versions.json"),
    results("provenance/git.json"),
    results("provenance/raw_manifest.parquet"),
    results("provenance/lineage.parquet"),
    results("provenance/audit.json"),
]


onstart:
    from instructx2x.provenance import record_invocation

    record_invocation(RESULTS)


rule provenance:
    input:
        outputs=provenance_inputs,
        raw_manifest=RAW_MANIFEST,
    output:
        PROVENANCE_FILES,
    params:
        code=code_version("provenance", "acquire.sources"),
        results_dir=lambda wildcards, output: str(Path(output[0]).parent.parent),  # RESULTS
        raw_roots={name: str(root) for name, root in sources.dataset_roots(config).items()},
        repo=workflow.basedir,
    threads: 2
    log:
        f"{LOGS}/provenance.log",
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    conda:
        "../envs/acquire.yaml"
    script:
        "../workflow_scripts/provenance_write.py"


ALL_TARGETS.extend(PROVENANCE_FILES)
