# Stage 1 of a generated dataset (source demo): its videos and split files, fully
# determined by the demo settings and seed (vis4mer.demo_data). Other datasets need no rule
# here: their videos are downloaded (download.smk) or read where they are.


rule demo_videos:
    output:
        videos=directory("results/{dataset}/videos"),
        splits=expand("results/{{dataset}}/splits/order/{split}.csv", split=SPLITS),
        metadata="results/{dataset}/videos.json",
    wildcard_constraints:
        dataset=GENERATED_DATASET_REGEX,
    params:
        demo=demo_settings,
    log:
        "logs/{dataset}/demo_videos.log",
    conda:
        "../../envs/video.yaml"
    script:
        "../scripts/demo_videos.py"
