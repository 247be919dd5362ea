# Stage 1: videos. A demo dataset is generated here (videos and split files, fully
# determined by the demo settings and seed). A local dataset needs no rule: its videos
# and split files are read where they are (see common.smk).


rule demo_videos:
    output:
        videos=directory("results/{dataset}/videos"),
        splits=expand("results/{{dataset}}/splits/order/{split}.csv", split=SPLITS),
        metadata="results/{dataset}/videos.json",
    wildcard_constraints:
        dataset=DEMO_DATASET_REGEX,
    params:
        demo=lambda wildcards: dataset_config(wildcards.dataset)["demo"],
    log:
        "logs/{dataset}/demo_videos.log",
    conda:
        "../../envs/video.yaml"
    script:
        "../scripts/demo_videos.py"
