"""`make bench`: every benchmark at its CPU preset, one thread per case (see common.parse_args),
results in bench/results/*_cpu_cpu.{json,png}, then the headline table (bench/summary.py).
About 20 minutes on 2 cores shared with other jobs."""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_scaling.py", "bench_speedups.py", "bench_floor.py", "bench_extraction.py", "bench_model.py", "bench_cauchy.py", "bench_input.py"]


def run_all(preset: str) -> None:
    for script in SCRIPTS:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / script), "--preset", preset], check=True)
        print(f"--- {script} --preset {preset}: {time.perf_counter() - start:.0f} s", flush=True)
    subprocess.run([sys.executable, str(HERE / "summary.py"), "--preset", preset], check=True)


if __name__ == "__main__":
    run_all("cpu")
