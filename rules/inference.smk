# Inference (method §9): every test/holdout pair edited in both modes (RSE and the wo-RSE
# ablation), sharded; each shard job loads the model once and edits its pairs in every mode.
INFER = config["inference"]
INFER_MODES = INFER["modes"]
INFER_SHARDS = range(INFER["shards"])
INFER_MODEL = INFER["model_dir"] or results("model/pipeline")
INFER_RECORDS = results("inference/records.parquet")


rule infer:
    input:
        instructions=results("instructions/instructions.parquet"),
        model=INFER_MODEL,
        masks=results("masks/pseudo_masks.npz"),
    output:
        shards=[results(f"inference/{mode}/shard_{{shard}}.parquet") for mode in INFER_MODES],
        # the shard's edits, guidance maps (.npy, .png), masks and overlays: images/shard_<k>/<mode>/
        images=directory(results("inference/images/shard_{shard}")),
    params:
        code=code_version("inference.shards", "inference.rse", "masks"),
        on_disk=on_disk("infer"),  # a file deleted from images/ re-runs this shard (rules/common.smk)
        modes=INFER_MODES,
        n_shards=INFER["shards"],
        rse=config["rse"],
        masks=config["masks"],
        seed=config["seed"],
        splits=INFER["splits"],
    threads: INFER["threads"]
    resources:
        gpu=INFER["gpu"],
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    log:
        f"{LOGS}/infer/shard_{{shard}}.log",
    benchmark:
        f"{BENCH}/infer/shard_{{shard}}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/inference_shard.py"


rule inference_records:
    input:
        shards=expand(results("inference/{mode}/shard_{shard}.parquet"), mode=INFER_MODES, shard=INFER_SHARDS),
    output:
        records=INFER_RECORDS,
        ledger=results("ledger/inference.tsv"),
        counts=results("ledger/inference.counts.tsv"),
    params:
        code=code_version("inference.shards"),
    log:
        f"{LOGS}/inference_records.log",
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=10,
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/inference_records.py"


ALL_TARGETS.append(INFER_RECORDS)
LEDGERS.append(results("ledger/inference.tsv"))
