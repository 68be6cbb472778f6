# Acquisition for `source: demo`: generate the synthetic dataset (PhysioNet layout + ground truth)
# and the raw manifest that ingest reads.
if config["source"] == "demo":

    rule demo_data:
        output:
            manifest=RAW_MANIFEST,
            tree=directory(f"{RAW_DIR}/physionet.org"),
            truth=directory(f"{RAW_DIR}/ground_truth"),
            marker=f"{RAW_DIR}/{sources.DEMO_MARKER}",  # written last: the generator finished (ingest checks it)
        params:
            code=code_version("synthetic"),
            on_disk=on_disk("demo_data"),  # a file deleted from the tree re-runs this job (rules/common.smk)
            out_dir=lambda wildcards, output: str(Path(output.tree).parent),  # RAW_DIR
            patients=config["demo"]["patients"],
            seed=config["demo"]["seed"],
            race_mix=config["demo"]["race_mix"],
        log:
            f"{LOGS}/demo_data.log",
        benchmark:
            f"{BENCH}/demo_data.tsv"
        threads: 1
        resources:
            mem_mb=lambda wildcards, attempt: 4000 * attempt,
            runtime=lambda wildcards, attempt: 30 * attempt,
        conda:
            "../envs/preprocess.yaml"
        script:
            "../workflow_scripts/demo_data.py"

    ALL_TARGETS.append(RAW_MANIFEST)
