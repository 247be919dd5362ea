"""`make bench`: the CPU-sized benchmarks (results in bench/results/*_cpu.json)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script in ["bench_model.py", "bench_cauchy.py"]:
    subprocess.run([sys.executable, str(HERE / script), "--preset", "cpu"], check=True)
