# Stage 3: features. Per shard, the backbone's tokens of every frame (float16
# [T, tokens, dim]); videos skipped when decoding stay skipped, with their reason.


rule features:
    input:
        unpack(features_input),
    output:
        "results/{dataset}/features/{backbone}/shard_{shard}.h5",
    wildcard_constraints:
        dataset=VIT_DATASET_REGEX,  # features.family vit; swin: rule features_swin (swin.smk)
    params:
        features=features_params,
    log:
        "logs/{dataset}/features/{backbone}/shard_{shard}.log",
    benchmark:
        "benchmarks/{dataset}/features/{backbone}/shard_{shard}.tsv"
    threads: config["runtime"]["threads"]["features"]
    resources:
        gpu=1,
        mem_mb=attempt_scaled("features", "mem_mb"),
        runtime=attempt_scaled("features", "runtime"),
    conda:
        "../../envs/video.yaml"
    script:
        "../scripts/features.py"
