# The split files of the lvu, breakfast and coin datasets (functions in datasets.smk):
# lvu_splits fetches LVU's split files when no split_dir is configured (a checkpoint: the
# video ids, hence the shards, are known only once they are there); splits writes one
# task's results/<dataset>/splits/<task>/{train,val,test}.csv with vis4mer.sources.


checkpoint lvu_splits:
    output:
        directory("results/{dataset}/lvu_1.0"),
    wildcard_constraints:
        dataset=LVU_DATASET_REGEX,
    params:
        url=lambda wildcards: dataset_config(wildcards.dataset)["splits_url"],
        tasks=lambda wildcards: list(dataset_config(wildcards.dataset)["tasks"]),
        durations=lambda wildcards: bool(dataset_config(wildcards.dataset)["trim_preview"]),
    log:
        "logs/{dataset}/lvu_splits.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/lvu_splits.py"


rule splits:
    input:
        unpack(splits_input),
    output:
        expand("results/{{dataset}}/splits/{{task}}/{split}.csv", split=SPLITS),
    wildcard_constraints:
        dataset=SOURCE_DATASET_REGEX,
    params:
        source=splits_params,
    log:
        "logs/{dataset}/splits/{task}.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/splits.py"
