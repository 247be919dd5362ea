# Stage 5: evaluate the best checkpoint on the test split (all windows at
# eval_stride_frames, aggregated per video); the confusion matrix is also drawn.


rule evaluate:
    input:
        checkpoint="results/{dataset}/{task}/{model}/best.pt",
        features=feature_shards,
        test=lambda wildcards: run_splits(wildcards)["test"],
    output:
        metrics="results/{dataset}/{task}/{model}/metrics.json",
    params:
        run="{dataset}/{task}/{model}",
        task=lambda wildcards: task_config(wildcards.dataset, wildcards.task),
        eval_stride_frames=lambda wildcards: evaluation_config(wildcards.dataset)["eval_stride_frames"],
    log:
        "logs/{dataset}/{task}/{model}/evaluate.log",
    benchmark:
        "benchmarks/{dataset}/{task}/{model}/evaluate.tsv"
    threads: config["runtime"]["threads"]["evaluate"]
    resources:
        gpu=1,
        mem_mb=attempt_scaled("evaluate", "mem_mb"),
        runtime=attempt_scaled("evaluate", "runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"


rule confusion_plot:
    input:
        metrics="results/{dataset}/{task}/{model}/metrics.json",
    output:
        report(
            "results/{dataset}/{task}/{model}/confusion.png",
            caption="../report/confusion.rst",
            category="{dataset}",
            subcategory="Confusion matrices",
            labels=run_report_labels,
        ),
    params:
        run="{dataset}/{task}/{model}",
    log:
        "logs/{dataset}/{task}/{model}/confusion_plot.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/confusion_plot.py"
