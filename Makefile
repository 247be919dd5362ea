# Every target that runs project code depends on `setup`, which is idempotent
# (scripts/setup.sh skips all pip work when the pins have not changed).
SHELL := bash
PY := .venv/bin/python
SNAKEMAKE := .venv/bin/snakemake
PYTEST_TIMEOUT := 600

.PHONY: setup test demo bench bench-gpu gpu-check gpu-wheels lint cuda clean

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --timeout=$(PYTEST_TIMEOUT)

# the run, then its report (results, curves, confusion matrices, what was run) in one HTML file
demo: setup
	$(SNAKEMAKE) --cores 2 --configfile=config/demo.yaml results/demo/all.json
	$(SNAKEMAKE) --configfile=config/demo.yaml --report results/demo/report.html -- results/demo/all.json

bench: setup
	$(PY) bench/run_cpu.py

bench-gpu: setup
	$(PY) bench/run_gpu.py

# The prepared GPU check (issue 18): on a GPU machine without a package index, with its own
# python3 (or PYTHON=...) and PYTHONPATH=lib, so no `setup`; at most 8 minutes on an H100/H200.
# ARGS=--cpu-dry-run runs the same steps at tiny sizes on CPU.
gpu-check:
	bench/gpu_check.sh $(ARGS)

# The wheels gpu-check installs there (.whl/, ignored by git, travels with the working tree).
gpu-wheels: setup
	bench/gpu_wheels.sh

lint: setup
	$(SNAKEMAKE) --lint

cuda: setup
	$(PY) -m vis4mer.kernels.cauchy_cuda --build

clean:
	find results -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .snakemake
