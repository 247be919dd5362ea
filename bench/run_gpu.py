"""`make bench-gpu`: the full-size benchmarks on a CUDA device (results named with the device)."""

import subprocess
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    sys.exit("make bench-gpu needs a CUDA device; none is visible (torch.cuda.is_available() is False)")
HERE = Path(__file__).resolve().parent
for script in ["bench_model.py", "bench_cauchy.py"]:
    subprocess.run([sys.executable, str(HERE / script), "--preset", "lvu"], check=True)
