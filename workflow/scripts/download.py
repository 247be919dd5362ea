"""Rule download: one shard of video ids with yt-dlp (vis4mer.download.download_shard).

The manifest is kept in a state file outside the rule's outputs (Snakemake removes outputs
before re-running a job), so a re-run keeps what it learnt (unavailable ids are not asked
again), and is copied to the output when the shard is done. Speed and politeness settings
(format, retries, backoff, rate limit, cookies, timeouts) come from the config, not params:
changing them never re-runs finished jobs.
"""

import shutil
from pathlib import Path

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "download")


def main():
    from vis4mer.atomic import atomic_path
    from vis4mer.download import DEFAULT_FORMAT, download_shard

    p = snakemake.params.download
    options = snakemake.config["datasets"][snakemake.wildcards.dataset]["download"]
    state = Path(p["state"])
    state.parent.mkdir(parents=True, exist_ok=True)
    logger.info(
        "%d ids into %s (network %s, mirrors %s, url %s)", len(p["ids"]), p["video_dir"], p["network"], p["local_dirs"], p["url_template"]
    )
    records = download_shard(
        p["ids"],
        p["video_dir"],
        state,
        url_template=p["url_template"],
        local_dirs=p["local_dirs"],
        format=options["format"] or DEFAULT_FORMAT,
        retries=options["retries"],
        backoff_s=options["backoff_s"],
        rate_limit=options["rate_limit"],
        cookies=options["cookies"],
        sleep_between_s=options["sleep_between_s"],
        socket_timeout_s=options["socket_timeout_s"],
        network=p["network"],
        js_runtimes=options["js_runtimes"],
    )
    with atomic_path(snakemake.output[0]) as tmp:
        shutil.copyfile(state, tmp)
    for video_id, record in records.items():
        if record.status in ("unavailable", "failed"):
            logger.warning("%s %s: %s", video_id, record.status, record.message)


run_logged(logger, main)
