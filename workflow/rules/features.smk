# Stage 3: features, results/<dataset>/features/<backbone>/shard_<i>.h5, by one of two rules
# (features.family): features (vit) from the frames shards, features_swin (swin) straight
# from the videos.
#
# features: per shard, the backbone's tokens of every frame (float16 [T, tokens, dim]);
# videos skipped when decoding stay skipped, with their reason.


rule features:
    input:
        unpack(features_input),
    output:
        "results/{dataset}/features/{backbone}/shard_{shard}.h5",
    wildcard_constraints:
        dataset=VIT_DATASET_REGEX,  # features.family vit; swin: rule features_swin (below)
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


# features_swin (features.family: swin): per shard, the clip features of
# each video straight from the video file (vis4mer.swin.extract_swin_features_to_shard),
# no frames stage. A feature "frame" is one segment of 32 consecutive frames, with
# (frames.size/32)^2 tokens (Swin-B at 224 px: 49 x 1024); at most
# features.max_segments.train segments per training video (ViS4mer: 512 Breakfast, 256
# COIN) and max_segments.test per other video (64), spread uniformly over the video, or
# over COIN's annotated range. Training windows (training.window_frames) then count
# segments: 64 segments x 49 tokens = l_max 3136. Videos without a file are recorded as
# skipped, with the reason (download message, or the missing path).


rule features_swin:
    input:
        unpack(features_swin_input),
    output:
        "results/{dataset}/features/{backbone}/shard_{shard}.h5",
    wildcard_constraints:
        dataset=SWIN_DATASET_REGEX,
    params:
        swin=features_swin_params,
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
        "../../envs/swin.yaml"
    script:
        "../scripts/features_swin.py"


# features.weights: pretrained. The backbone's public weights, fetched once into the cache of
# the library that owns them (the Hugging Face hub's for timm ViTs, torch.hub's for the Video
# Swin release; sha256 checked against features.weights_sha256 when set), on the machine that
# runs snakemake: cluster nodes often have no internet, and with HF_HUB_OFFLINE=1 the jobs load
# the cached file this record names. A re-run keeps the record (and the cache) as long as both
# exist; --forcerun fetch_weights asks the hub again.


rule fetch_weights:
    output:
        "results/{dataset}/features/{backbone}/weights.json",
    wildcard_constraints:
        dataset=PRETRAINED_DATASET_REGEX,
    params:
        fetch=fetch_weights_params,
    log:
        "logs/{dataset}/features/{backbone}/fetch_weights.log",
    localrule: True
    conda:
        "../../envs/video.yaml"
    script:
        "../scripts/fetch_weights.py"

