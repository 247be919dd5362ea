"""Rule lvu_splits (a checkpoint): fetch the LVU 1.0 split files when no split_dir is configured.

`url` is the official release (a .tar.gz holding lvu_1.0/) or the URL of a directory laid out
as lvu_1.0/ (<task>/<split>.csv and lvu_durations.csv, e.g. raw files on GitHub), fetched
file by file (the configured tasks only). The configured tasks' files (and lvu_durations.csv
when trim_preview needs it) are checked with vis4mer.sources.lvu before the directory is put in place.
"""

import os
import shutil
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "lvu_splits")

ATTEMPTS = 3


def fetch(url: str, path: Path) -> None:
    """`url` to `path`, with a few attempts (1 s, 2 s backoff)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as handle:
                shutil.copyfileobj(response, handle)
            return
        except OSError as error:
            if attempt == ATTEMPTS:
                raise OSError(f"could not fetch {url} after {ATTEMPTS} attempts: {error} (datasets.<lvu>.splits_url)") from error
            logger.warning("fetching %s failed (%s); retrying", url, error)
            time.sleep(attempt)


def from_archive(url: str, work: Path) -> Path:
    archive = work / "lvu.tar.gz"
    fetch(url, archive)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".csv")]
        tar.extractall(work / "extracted", members=members, filter="data")
    roots = sorted({p.parent.parent for p in (work / "extracted").rglob("genre/train.csv")})
    if len(roots) != 1:
        raise ValueError(f"{url}: expected one lvu_1.0 directory (with genre/train.csv) in the archive, found {len(roots)}")
    return roots[0]


def from_directory(url: str, work: Path, tasks, durations: bool) -> Path:
    from vis4mer.sources import lvu

    root = work / "lvu_1.0"
    base = url.rstrip("/")
    for task in tasks:
        for split in lvu.SPLITS:
            fetch(f"{base}/{task}/{split}.csv", root / task / f"{split}.csv")
    if durations:
        fetch(f"{base}/{lvu.DURATIONS_FILE}", root / lvu.DURATIONS_FILE)
    return root


def main():
    from vis4mer.sources import lvu

    url, out = snakemake.params.url, Path(snakemake.output[0])
    tasks, durations = snakemake.params.tasks, snakemake.params.durations
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".lvu_splits-", dir=out.parent))
    try:
        archive = url.split("?")[0].endswith((".tar.gz", ".tgz", ".tar"))
        root = from_archive(url, work) if archive else from_directory(url, work, tasks, durations)
        counts = {task: sum(len(lvu.read_task_split(root, task, split)) for split in lvu.SPLITS) for task in tasks}
        n_durations = len(lvu.read_durations(root)) if durations or (root / lvu.DURATIONS_FILE).exists() else 0
        logger.info("fetched %s: videos per task %s, %d durations", url, counts, n_durations)
        if out.exists():
            shutil.rmtree(out)
        os.replace(root, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


run_logged(logger, main)
