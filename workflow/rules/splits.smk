# The split files of the benchmarks read with their own loaders (lvu, breakfast, coin:
# vis4mer.sources.Benchmark). lvu_splits fetches LVU's split files when no split_dir is
# configured (a checkpoint: the video ids, hence the shards, are known only once they are
# there); splits writes one task's results/<dataset>/splits/<task>/{train,val,test}.csv
# with vis4mer.sources.read_source, from the source files the dataset's source names.


checkpoint lvu_splits:
    output:
        directory("results/{dataset}/lvu_1.0"),
    wildcard_constraints:
        dataset=FETCHED_SPLITS_DATASET_REGEX,
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
        dataset=SPLITS_RULE_DATASET_REGEX,
    params:
        source=splits_params,
    log:
        "logs/{dataset}/splits/{task}.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/splits.py"
