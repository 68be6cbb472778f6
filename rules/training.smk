# Training (method §8): initial components (tiny preset with its VAE pre-training, or a local
# pretrained InstructPix2Pix directory), the frozen VAE's latent cache, then fine-tuning with
# Lightning; the EMA UNet is exported with the frozen parts as a diffusers pipeline.
# Checkpoints live in results/model/checkpoints (not an output: a failed or requeued job keeps
# them and the next run resumes from last.ckpt); the declared output checkpoints.manifest.json
# lists them with their SHA-256 for the lineage.
MODEL_CFG = config["model"]
TRAIN = config["training"]
TRAIN_GPUS = 0 if TRAIN["accelerator"] == "cpu" else TRAIN["devices"]
MODEL_PIPELINE = results("model/pipeline")
MODEL_METRICS = results("model/metrics.csv")
MODEL_LOSS_PNG = results("model/loss_curve.png")
MODEL_CHECKPOINTS_MANIFEST = results("model/checkpoints.manifest.json")
# What training computes with: the training section without the keys that only size the job
# (changing mem_mb or runtime for a cluster must not retrain the model).
TRAIN_RESOURCE_KEYS = ("cpu_threads", "cpus_per_gpu", "mem_mb", "runtime", "latent_jobs", "latent_shard_pairs",
                       "latent_batch", "latent_workers")
TRAIN_SETTINGS = {k: v for k, v in TRAIN.items() if k not in TRAIN_RESOURCE_KEYS}
TRAIN_CODE = code_version("training.module", "training.train", "training.latents", "model")
LATENT_JOBS = list(range(TRAIN["latent_jobs"]))


rule training_prepare:
    input:
        instructions=results("instructions/instructions.parquet"),
    output:
        init=directory(results("model/init")),
    params:
        code=code_version("model", "training.prepare", "training.data"),
        on_disk=on_disk("training_prepare"),  # a file deleted from init/ re-runs this job
        model=MODEL_CFG,
        resolution=config["registration"]["resolution"],
        seed=config["seed"],
    log:
        f"{LOGS}/training_prepare.log",
    benchmark:
        f"{BENCH}/training_prepare.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/training_prepare.py"


rule training_latents_job:
    # One of training.latent_jobs jobs: a contiguous block of the pairs, streamed through a
    # DataLoader and the VAE (GPU when the job has one) into shards under model/latents/shards/
    # (not an output: a killed or requeued job keeps its finished shards and resumes after them).
    input:
        instructions=results("instructions/instructions.parquet"),
        init=results("model/init"),
    output:
        manifest=results("model/latents/job_{job}.json"),
        # its shards/job_<JJJ>/ files with their SHA-256 (the lineage; the directory itself is not an output)
        files=results("model/latents/job_{job}.manifest.json"),
    params:
        code=code_version("training.latents", "training.data"),
        splits=TRAIN["splits"],
        copies=TRAIN["latent_copies"],
        augment=TRAIN["augment"],
        resolution=config["registration"]["resolution"],
        seed=config["seed"],
        jobs=TRAIN["latent_jobs"],
        shard_pairs=TRAIN["latent_shard_pairs"],
        batch=TRAIN["latent_batch"],
        workers=TRAIN["latent_workers"],
        work_dir=lambda wildcards, output: str(Path(output.manifest).parent / "shards"),
    log:
        f"{LOGS}/training_latents/job_{{job}}.log",
    benchmark:
        f"{BENCH}/training_latents/job_{{job}}.tsv"
    threads: TRAIN["latent_workers"] + 1
    resources:
        gpu=1 if TRAIN_GPUS else 0,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/training_latents_job.py"


rule training_latents:
    # The index over the jobs' shards (what training memory-maps) and the ledger of unreadable pairs.
    input:
        manifests=expand(results("model/latents/job_{job}.json"), job=LATENT_JOBS),
    output:
        latents=results("model/latents/index.json"),
        ledger=results("ledger/training.tsv"),
        counts=results("ledger/training.counts.tsv"),
    params:
        code=code_version("training.latents", "training.data"),
    log:
        f"{LOGS}/training_latents.log",
    benchmark:
        f"{BENCH}/training_latents.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/training_latents.py"


rule training_train:
    input:
        init=results("model/init"),
        latents=results("model/latents/index.json"),
    output:
        pipeline=directory(MODEL_PIPELINE),
        metrics=MODEL_METRICS,
        loss_png=report(MODEL_LOSS_PNG, caption="../docs/training_loss_curve.rst", category="Training"),
        # checkpoints/ is not an output (Snakemake would delete it before a rerun, ending resume):
        # this manifest of its files with their SHA-256 is, so they are in the lineage
        checkpoints=MODEL_CHECKPOINTS_MANIFEST,
    params:
        code=TRAIN_CODE,
        on_disk=on_disk("training_train"),  # a file deleted from pipeline/ re-runs training
        # The code version is also in the settings train() fingerprints its checkpoints with: after
        # a code edit the job re-runs and starts afresh, never resuming the old code's last.ckpt.
        training={**TRAIN_SETTINGS, "code": TRAIN_CODE},
        out_dir=lambda wildcards, output: str(Path(output.metrics).parent),  # results/model
        seed=config["seed"],
    log:
        f"{LOGS}/training_train.log",
    benchmark:
        f"{BENCH}/training_train.tsv"
    threads: TRAIN["cpus_per_gpu"] if TRAIN_GPUS else TRAIN["cpu_threads"]
    resources:
        gpu=TRAIN_GPUS,
        tasks=max(1, TRAIN_GPUS) * TRAIN["num_nodes"],
        nodes=TRAIN["num_nodes"],
        cpus_per_gpu=TRAIN["cpus_per_gpu"] if TRAIN_GPUS else 0,
        mem_mb=lambda wildcards, attempt: TRAIN["mem_mb"] * attempt,
        runtime=lambda wildcards, attempt: TRAIN["runtime"] * attempt,
    conda:
        "../envs/model.yaml"
    script:
        "../workflow_scripts/training_train.py"


ALL_TARGETS.extend([MODEL_PIPELINE, MODEL_METRICS, MODEL_LOSS_PNG])
LEDGERS.append(results("ledger/training.tsv"))
