# Acquisition: the raw datasets in PhysioNet's layout and the raw manifest that ingest takes as input.
#   source: demo      -> rules/demo.smk (synthetic generator)
#   source: physionet -> physionet_tables, then physionet_images (instructx2x.acquire.download)
#   source: local     -> local_manifest (instructx2x.acquire.local_manifest)
# The download rules are `localrule: True`: on a cluster they run on the node Snakemake itself runs
# on (the login node, which has internet), never in a batch job. Credentials are read inside Python
# from PHYSIONET_USERNAME/PHYSIONET_PASSWORD or ~/.netrc; nothing secret is a param or a shell line.

# slug/version of each project: a param, so changing a version re-runs acquisition
DATASET_VERSIONS = " ".join(f"{n}={d['slug']}/{d['version']}" for n, d in sorted(config["datasets"].items()))

if config["source"] == "physionet":

    rule physionet_tables:
        output:
            manifest=results("raw/physionet_tables_manifest.parquet"),
        params:
            code=code_version("acquire", "ingest.raw"),
            raw_dir=RAW_DIR,
            datasets=DATASET_VERSIONS,
        log:
            f"{LOGS}/acquire/physionet_tables.log",
        benchmark:
            f"{BENCH}/acquire/physionet_tables.tsv"
        resources:
            mem_mb=lambda wildcards, attempt: 2000 * attempt,
            runtime=lambda wildcards, attempt: 120 * attempt,
        localrule: True
        script:
            "../workflow_scripts/acquire_tables.py"

    rule physionet_images:
        input:
            tables=results("raw/physionet_tables_manifest.parquet"),
        output:
            manifest=RAW_MANIFEST,
            summary=results("raw/physionet_summary.json"),
            ledger=results("ledger/acquire.tsv"),
            counts=results("ledger/acquire.counts.tsv"),
        params:
            code=code_version("acquire", "ingest.raw"),
            raw_dir=RAW_DIR,
            datasets=DATASET_VERSIONS,
        log:
            f"{LOGS}/acquire/physionet_images.log",
        benchmark:
            f"{BENCH}/acquire/physionet_images.tsv"
        resources:
            mem_mb=lambda wildcards, attempt: 4000 * attempt,
            runtime=lambda wildcards, attempt: 720 * attempt,
        localrule: True
        script:
            "../workflow_scripts/acquire_images.py"

    ALL_TARGETS.extend([RAW_MANIFEST, results("raw/physionet_summary.json")])
    LEDGERS.append(results("ledger/acquire.tsv"))

elif config["source"] == "local":

    rule local_manifest:
        output:
            manifest=RAW_MANIFEST,
            ledger=results("ledger/acquire.tsv"),
            counts=results("ledger/acquire.counts.tsv"),
        params:
            code=code_version("acquire", "ingest.raw"),
            datasets=DATASET_VERSIONS,
        log:
            f"{LOGS}/acquire/local_manifest.log",
        benchmark:
            f"{BENCH}/acquire/local_manifest.tsv"
        resources:
            mem_mb=lambda wildcards, attempt: 4000 * attempt,
            runtime=lambda wildcards, attempt: 120 * attempt,
        script:
            "../workflow_scripts/acquire_local.py"

    ALL_TARGETS.append(RAW_MANIFEST)
    LEDGERS.append(results("ledger/acquire.tsv"))
