# Stage 4: train one model on one task of a dataset, from the stored features.
# The test split is an input only for the set of class names (so every class gets an
# output even if train/val lack it); its labels are never used for training.


rule train:
    input:
        features=feature_shards,
        train=lambda wildcards: run_splits(wildcards)["train"],
        val=lambda wildcards: run_splits(wildcards)["val"],
        test=lambda wildcards: run_splits(wildcards)["test"],
    output:
        best="results/{dataset}/{task}/{model}/best.pt",
        last="results/{dataset}/{task}/{model}/last.pt",
        log="results/{dataset}/{task}/{model}/train_log.csv",
        curve=report(
            "results/{dataset}/{task}/{model}/train_curve.png",
            caption="../report/train_curve.rst",
            category="{dataset}",
            subcategory="Training curves",
            labels=run_report_labels,
        ),
    params:
        run="{dataset}/{task}/{model}",
        task=lambda wildcards: task_config(wildcards.dataset, wildcards.task),
        model=model_config,
        training=training_config,
        recipe=run_recipe,
        # a function of `output` too: derived from the layout, not a setting, so Snakemake
        # does not record it among the params whose change re-runs the job
        replaces=lambda wildcards, output: model_results(wildcards),
    log:
        "logs/{dataset}/{task}/{model}/train.log",
    benchmark:
        "benchmarks/{dataset}/{task}/{model}/train.tsv"
    threads: config["runtime"]["threads"]["train"]
    resources:
        # training.gpus_per_run > 1: DistributedDataParallel over the job's GPUs (train.py)
        gpu=config["training"]["gpus_per_run"],
        mem_mb=attempt_scaled("train", "mem_mb"),
        runtime=attempt_scaled("train", "runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
