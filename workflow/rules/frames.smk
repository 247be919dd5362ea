# Stage 2: frames. One job per shard of `shard_size` videos: decode at frames.fps,
# resize + centre-crop to frames.size, into one HDF5 shard. Intermediate: temp()
# unless keep_frames (a re-run of features then needs the frames decoded again).


rule frames:
    input:
        unpack(frames_input),
    output:
        frames_output("results/{dataset}/frames/shard_{shard}.h5"),
    params:
        frames=frames_params,
    log:
        "logs/{dataset}/frames/shard_{shard}.log",
    benchmark:
        "benchmarks/{dataset}/frames/shard_{shard}.tsv"
    threads: config["runtime"]["threads"]["frames"]
    resources:
        mem_mb=attempt_scaled("frames", "mem_mb"),
        runtime=attempt_scaled("frames", "runtime"),
    conda:
        "../../envs/video.yaml"
    script:
        "../scripts/frames.py"
