"""`make bench-gpu`: every benchmark at its full (LVU) size on a CUDA device (results named with
the device, e.g. bench/results/scaling_lvu_nvidia_h100_80gb_hbm3.json), then the headline table.
The CUDA Cauchy extension is built first; if it cannot be, the benchmarks record the fallback."""

import subprocess
import sys

import torch

from run_cpu import run_all

if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("make bench-gpu needs a CUDA device; none is visible (torch.cuda.is_available() is False)")
    build = subprocess.run([sys.executable, "-m", "vis4mer.kernels.cauchy_cuda", "--build"], check=False)
    if build.returncode:
        print("building the CUDA Cauchy extension failed; continuing with the fallback backends", flush=True)
    run_all("lvu")
