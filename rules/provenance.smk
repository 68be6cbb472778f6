# Provenance: resolved config, package versions, git commit, command lines, raw manifest, and the
# SHA-256 + producing rule + inputs of every output; audited right after it is written.
# The report (the last artifact) shows the audit status.

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
        repo=workflow.basedir,
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
