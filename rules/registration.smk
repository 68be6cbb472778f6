# Registration: one job per shard (bounded job count), a gather rule, then the cheap gate
# (MI threshold, mirror and wrong-patient checks) and the QA montage. Changing a gate threshold
# re-runs only registration_gate and the montage.
REG_CFG = config["registration"]
REG_SHARDS = list(range(REG_CFG["shards"]))
REG_SETTINGS = {k: v for k, v in REG_CFG.items() if k not in ("shards", "mi_threshold", "mirror_margin", "ncc_min", "structure_ncc_min", "same_patient_action", "montage_pairs")}


rule registration_shard:
    input:
        pairs=results("pairs/pairs.parquet"),
    output:
        table=results("registration/shards/shard_{shard}.parquet"),
        images=directory(results("registration/images/shard_{shard}")),
    params:
        code=code_version("registration.algorithm", "registration.quality", "registration.stage"),
        on_disk=on_disk("registration_shard"),  # a file deleted from images/ re-runs this shard
        settings=REG_SETTINGS,
        seed=config["seed"],
        shards=REG_CFG["shards"],
    log:
        f"{LOGS}/registration/shard_{{shard}}.log",
    benchmark:
        f"{BENCH}/registration/shard_{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/registration_shard.py"


rule registration_gather:
    input:
        shards=expand(results("registration/shards/shard_{shard}.parquet"), shard=REG_SHARDS),
    output:
        table=results("registration/registration.parquet"),
        ledger=results("ledger/registration.tsv"),
        counts=results("ledger/registration.counts.tsv"),
    params:
        code=code_version("registration.stage"),
    log:
        f"{LOGS}/registration_gather.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/registration_gather.py"


rule registration_gate:
    input:
        table=results("registration/registration.parquet"),
        pairs_ledger=results("ledger/pairs.tsv"),
    output:
        accepted=results("registration/accepted_pairs.parquet"),
        fates=results("registration/pair_fates.parquet"),
        ledger=results("ledger/registration_gate.tsv"),
        counts=results("ledger/registration_gate.counts.tsv"),
    params:
        code=code_version("registration.stage", "registration.gate"),
        mi_threshold=REG_CFG["mi_threshold"],
        mirror_margin=REG_CFG["mirror_margin"],
        ncc_min=REG_CFG["ncc_min"],
        structure_ncc_min=REG_CFG["structure_ncc_min"],
        same_patient_action=REG_CFG["same_patient_action"],
    log:
        f"{LOGS}/registration_gate.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/registration_gate.py"


rule registration_montage:
    input:
        table=results("registration/registration.parquet"),
        fates=results("registration/pair_fates.parquet"),
        images=expand(results("registration/images/shard_{shard}"), shard=REG_SHARDS),
    output:
        png=report(results("registration/montage.png"), caption="../docs/registration_montage.rst", category="Registration"),
    params:
        code=code_version("registration.montage"),
        per_group=REG_CFG["montage_pairs"],
    log:
        f"{LOGS}/registration_montage.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/registration_montage.py"


ALL_TARGETS.extend(
    [
        results("registration/accepted_pairs.parquet"),
        results("registration/pair_fates.parquet"),
        results("registration/montage.png"),
    ]
)
LEDGERS.extend([results("ledger/registration.tsv"), results("ledger/registration_gate.tsv")])
