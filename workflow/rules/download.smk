# Stage 1 of the downloaded datasets (lvu, coin: their video ids are YouTube ids): the
# videos, with yt-dlp (vis4mer.download.download_shard).
#
# One job per shard of video ids (the sorted ids of the dataset cut into chunks of
# download.shard_size, by default shard_size), never one per video. A job writes
# results/<dataset>/downloads/shard_<i>.json, the shard's manifest: per id downloaded |
# local | unavailable | failed, with yt-dlp's message. Unavailable or failed videos never
# fail the job; the frames stage records them as skipped, with that message, and the
# evaluation counts them as missing. The videos themselves are kept in download.video_dir
# (default data/<dataset>/videos), outside results/.
#
# download.source: youtube, local (the mirror folders download.local_dirs only: no
# network) or [local, youtube] (mirrors first, then yt-dlp). A re-run keeps finished files
# and does not ask again for ids found unavailable (the state of each shard is kept in
# results/<dataset>/downloads/.state/; delete it to ask again); failed ids are retried.
# Format, retries, backoff, rate limit, cookies and timeouts are read from the config by
# the script, so changing them never re-runs finished jobs.
#
# Download jobs run on the machine that runs snakemake (download_localrule: true, the
# default), since cluster compute nodes often have no internet. Each holds one unit of
# the resource `network`: `--resources network=2` caps the parallel downloads.


rule download:
    output:
        "results/{dataset}/downloads/shard_{shard}.json",
    wildcard_constraints:
        dataset=DOWNLOAD_DATASET_REGEX,
    params:
        download=download_params,
    log:
        "logs/{dataset}/downloads/shard_{shard}.log",
    benchmark:
        "benchmarks/{dataset}/downloads/shard_{shard}.tsv"
    threads: 1
    resources:
        network=1,
    localrule: config["download_localrule"]
    conda:
        "../../envs/download.yaml"
    script:
        "../scripts/download.py"
