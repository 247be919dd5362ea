"""bench/: the FLOP and byte formulas against hand counts and torch's FLOP counter, the FFT
fast-length helper, the shared plumbing, and every script's `main` at its tiny preset writing
JSON and a PNG into a tmp dir (no timing assertions: the numbers depend on the machine)."""

import importlib
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

common = importlib.import_module("common")
bench_floor = importlib.import_module("bench_floor")
bench_speedups = importlib.import_module("bench_speedups")
bench_extraction = importlib.import_module("bench_extraction")
summary = importlib.import_module("summary")

from vis4mer import build_model  # noqa: E402

# ---- FLOP and byte formulas -------------------------------------------------------------------


def test_linear_flops_hand_count():
    # one block, B=1, L=2, H=4: output_linear 2·1·2·4·4 = 64, project 2·1·1·4·2 = 16,
    # decoder 2·1·2·10 = 40 forward; ×3 with the backward
    size = dict(batch=1, d_input=4, d_model=4, n_layers=1, d_state=2, length=2)
    assert bench_floor.step_flops(size)["linear"] == 3 * (64 + 16 + 40)


@pytest.mark.parametrize(
    "size",
    [
        dict(batch=2, d_input=12, d_model=16, n_layers=2, d_state=8, length=33),  # encoder, odd length
        dict(batch=1, d_input=16, d_model=16, n_layers=3, d_state=8, length=40),
    ],
)
def test_linear_flops_match_torch_flop_counter(size):
    """Forward + backward FLOPs of the model's linear layers, as torch counts them."""
    model = build_model("vis4mer", size["d_input"], size["length"], 10, size["d_model"], size["n_layers"], d_state=size["d_state"])
    x = torch.randn(size["batch"], size["length"], size["d_input"])
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    linears = ("encoder", "output_linear", "project", "decoder")
    counted = sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name.split(".")[-1] in linears)
    assert bench_floor.step_flops(size)["linear"] == counted


def test_cauchy_and_fft_flop_terms():
    assert bench_floor.CAUCHY_FLOPS_FORWARD == 2 * (2 + 6) + 4 * 2 * 8 == 80
    assert bench_floor.CAUCHY_FLOPS_BACKWARD == 16 + 64 + 12 + 64 == 156
    assert bench_floor.real_fft_flops(8) == 2.5 * 8 * 3
    size = dict(batch=2, d_input=8, d_model=8, n_layers=1, d_state=4, length=10)
    flops = bench_floor.step_flops(size)
    # H=8 heads × (10//2 + 1) nodes × 2 poles
    assert flops["cauchy"] == 8 * 6 * 2 * (80 + 156)
    # n_fft = next_fast_len(19) = 20: 4 FFTs per [B, H] row and 2 per head, plus the kernel's
    # irfft (n = l_max = 10) forward and backward
    assert flops["fft"] == pytest.approx((4 * 16 + 2 * 8) * 2.5 * 20 * math.log2(20) + 2 * 8 * 2.5 * 10 * math.log2(10))
    assert flops["spectrum_product"] == 3 * 6 * 16 * 11
    assert flops["total"] == pytest.approx(sum(v for k, v in flops.items() if k != "total"))


def test_step_bytes_hand_count():
    # B=1, L=3, H=2: E = 24 bytes, n_fft = 5, C = 2·3 complex = 48 bytes, padded 2·5 floats = 40 bytes
    size = dict(batch=1, d_input=2, d_model=2, n_layers=1, d_state=2, length=3)
    moved = bench_floor.step_bytes(size)
    forward = {
        "input": 2 * 24,
        "layernorm": 2 * 24,
        "fft_conv": (24 + 48) + 2 * 48 + (48 + 40),
        "skip_gelu": 5 * 24,
        "output_linear": 2 * 24,
        "residual": 3 * 24,
        "pool_project_gelu": 2.75 * 24,
    }
    for key, value in forward.items():
        assert moved[key] == value
        if key != "input":
            assert moved[key + "_backward"] == 2 * value
    assert moved["optimizer"] == 7 * 4 * bench_floor.parameter_count(size)
    assert moved["total"] == sum(forward.values()) + 2 * (sum(forward.values()) - forward["input"]) + moved["optimizer"]


@pytest.mark.parametrize(
    "size",
    [
        dict(batch=1, d_input=2, d_model=2, n_layers=1, d_state=2, length=3),
        dict(batch=1, d_input=12, d_model=16, n_layers=2, d_state=8, length=33),
        dict(batch=1, d_input=1024, d_model=1024, n_layers=3, d_state=64, length=11820),
    ],
)
def test_parameter_count_matches_the_model(size):
    model = build_model("vis4mer", size["d_input"], size["length"], 10, size["d_model"], size["n_layers"], d_state=size["d_state"])
    assert bench_floor.parameter_count(size) == sum(p.numel() for p in model.parameters())


def test_layer_shapes_halve_and_keep_the_odd_step():
    shapes = bench_floor.layer_shapes(dict(d_model=1024, n_layers=3, length=11820))
    assert [(s["heads"], s["length"], s["n_fft"], s["nodes"]) for s in shapes] == [
        (1024, 11820, 24000, 5911), (512, 5910, 12000, 2956), (256, 2955, 6000, 1478)
    ]
    assert [s["length"] for s in bench_floor.layer_shapes(dict(d_model=8, n_layers=3, length=11))] == [11, 6, 3]


def test_floor_is_the_slower_of_compute_and_memory():
    flops = {"linear": 8e12, "total": 10e12}
    compute = bench_floor.floor_seconds(flops, 1e9, linear_rate=8e12, fp32_rate=2e12, bandwidth=1e12)
    assert compute == {"compute_s": 2.0, "memory_s": 1e-3, "floor_s": 2.0, "bound": "compute"}
    memory = bench_floor.floor_seconds(flops, 1e13, linear_rate=8e12, fp32_rate=2e12, bandwidth=1e12)
    assert memory["floor_s"] == 10.0 and memory["bound"] == "memory"


def test_vit_flops_hand_count():
    # ViT-L/16 at 224²: T = 197, d = 1024, 24 blocks
    t, d = 197, 1024
    block = 2 * t * d * 3 * d + 2 * t * d * d + 4 * t * t * d + 4 * t * d * 4 * d
    assert bench_extraction.vit_flops_per_frame(24, 1024, 224) == 24 * block + 2 * 196 * 768 * 1024 == 123_107_377_152


def test_vit_flops_match_torch_flop_counter():
    timm = importlib.import_module("vis4mer.compat").import_timm()
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    for block in model.blocks:
        block.attn.fused_attn = False  # explicit q·kᵀ and attn·v matmuls, which the counter sees
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_features(torch.randn(1, 3, 32, 32))
    assert counter.get_total_flops() == bench_extraction.vit_flops_per_frame(12, 192, 32)


# ---- FFT fast lengths -------------------------------------------------------------------------


def test_fft_lengths_at_lvu_length():
    sizes = bench_speedups.fft_lengths(11820)
    assert sizes["naive"] == 23640 and sizes["naive_factors"] == [2, 2, 2, 3, 5, 197]
    assert sizes["fast"] == 24000 and max(sizes["fast_factors"]) <= 5


@pytest.mark.parametrize("length", [1, 2, 7, 97, 100, 2955, 5910])
def test_fast_length_is_5_smooth_and_long_enough(length):
    sizes = bench_speedups.fft_lengths(length)
    assert sizes["fast"] >= 2 * length - 1
    assert max(bench_speedups.prime_factors(sizes["fast"]) or [1]) <= 5
    assert math.prod(sizes["naive_factors"]) == 2 * length


def test_prime_factors():
    assert bench_speedups.prime_factors(1) == []
    assert bench_speedups.prime_factors(97) == [97]
    assert bench_speedups.prime_factors(360) == [2, 2, 2, 3, 3, 5]


# ---- shared plumbing --------------------------------------------------------------------------


def test_ratio():
    assert common.ratio(3, 2) == 1.5
    assert common.ratio(2, 3) == 0.667
    assert common.ratio(None, 2) is None and common.ratio(1, 0) is None and common.ratio("oom", 1) is None


def test_time_repeated_reports_time_and_memory():
    result = common.time_repeated(lambda: torch.ones(1000).sum(), torch.device("cpu"), warmup=1, repeats=3)
    assert set(result) == {"seconds", "min_seconds", "peak_mib", "peak_extra_mib", "repeats"}
    assert 0 <= result["min_seconds"] <= result["seconds"] and result["peak_extra_mib"] >= 0


def test_cpu_allocated_peak_counts_what_a_call_allocates():
    kept = []

    def call():
        kept.clear()  # frees the previous call's 2 MiB
        scratch = torch.ones(1 << 20)  # 4 MiB, freed on return
        kept.append(torch.ones(1 << 19))  # 2 MiB, kept until the next call
        return scratch.sum()

    assert common.cpu_allocated_peak_mib(call) == pytest.approx(4.0, abs=0.05)
    assert common.cpu_allocated_peak_mib(call) == common.cpu_allocated_peak_mib(call)


def test_time_repeated_reports_allocated_memory_when_asked():
    result = common.time_repeated(lambda: torch.ones(1 << 20).sum(), torch.device("cpu"), warmup=0, repeats=1, allocated=True)
    assert result["allocated_extra_mib"] == pytest.approx(4.0, abs=0.05)


def test_lxl_attention_case_materialises_the_attention_matrix():
    """SDPA's math backend holds B·heads·L² floats; the default CPU kernel never does."""
    size = dict(batch=1, d_input=16, d_model=16, n_layers=1, length=256, warmup=0, repeats=1)
    matrix_mib = 1 * 8 * 256**2 * 4 / 2**20
    lxl = common.train_step_case("transformer", size, "cpu", attention="math")
    sdpa = common.train_step_case("transformer", size, "cpu")
    assert (lxl["attention"], sdpa["attention"]) == ("math", "auto")
    assert lxl["allocated_extra_mib"] >= matrix_mib > sdpa["allocated_extra_mib"]
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        common.train_step_case("transformer", size, "cpu", attention="flash")


def test_write_json_honours_the_results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path / "out"))
    path = common.write_json("example", {"value": float("nan"), "nested": [float("inf"), 1.0]})
    assert path == tmp_path / "out" / f"example_{common.device_tag()}.json"
    data = json.loads(path.read_text())
    assert data["value"] is None and data["nested"] == [None, 1.0] and "cores" in data["machine"]


def test_isolated_returns_results_errors_and_deaths(monkeypatch):
    monkeypatch.setattr(common, "_INLINE", False)
    assert common.isolated(math.factorial, 5) == 120
    assert common.isolated(math.factorial, -1)["error"].startswith("ValueError")
    assert "exited with code 3" in common.isolated(os._exit, 3)["error"]


def test_side_by_side_runs_round_robin_and_keeps_the_fastest_round(monkeypatch):
    monkeypatch.setattr(common, "_INLINE", True)
    calls = []
    results = iter([{"error": "oom"}, {"min_seconds": 1.0}, {"min_seconds": 2.0}, {"min_seconds": 5.0}])

    def case(name):
        calls.append(name)
        return next(results)

    best = common.side_by_side({"a": (case, "a"), "b": (case, "b")}, rounds=2)
    assert calls == ["a", "b", "a", "b"]
    assert best == {"a": {"min_seconds": 2.0, "rounds": 2}, "b": {"min_seconds": 1.0, "rounds": 2}}


# ---- every script at its tiny preset ----------------------------------------------------------

SCRIPTS = {
    "bench_scaling": ("scaling", {"results", "headline", "size"}),
    "bench_speedups": ("speedups", {"results", "headline", "size"}),
    "bench_floor": ("floor", {"flops", "bytes", "matmul", "copy", "floor", "measured", "measured_over_floor", "headline"}),
    "bench_extraction": ("extraction", {"matmul", "vit", "decode", "headline"}),
    "bench_model": ("model", {"results", "size"}),
    "bench_cauchy": ("cauchy", {"results", "size"}),
    "bench_input": ("input", {"results", "headline", "size", "memcpy_mb_per_s", "shards"}),
}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """Run every script's main once at --preset tiny (in-process, on CPU, torch's thread count
    left alone for the tests that follow) into a tmp dir."""
    directory = tmp_path_factory.mktemp("bench_results")
    previous = os.environ.get(common.RESULTS_ENV)
    os.environ[common.RESULTS_ENV] = str(directory)
    try:
        payloads = {
            module: importlib.import_module(module).main(["--preset", "tiny", "--inline", "--device", "cpu", "--threads", "0"]) for module in SCRIPTS
        }
    finally:
        common._INLINE = False
        if previous is None:
            del os.environ[common.RESULTS_ENV]
        else:
            os.environ[common.RESULTS_ENV] = previous
    return directory, payloads


@pytest.mark.parametrize("module", SCRIPTS)
def test_script_writes_json_and_plot(tiny_results, module):
    directory, payloads = tiny_results
    name, keys = SCRIPTS[module]
    stem = f"{name}_tiny_{common.device_tag()}"
    data = json.loads((directory / f"{stem}.json").read_text())
    assert keys | {"machine", "preset", "device"} <= set(data)
    assert data["preset"] == "tiny" and data["device"] == "cpu"
    assert (directory / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "error" not in json.dumps(payloads[module]), "a tiny case failed"


def test_scaling_rows_have_both_models_and_ratios(tiny_results):
    _, payloads = tiny_results
    for row in payloads["bench_scaling"]["results"]:
        assert row["vis4mer"]["cauchy_backend"] == "torch" and row["transformer"]["model"] == "transformer"
        assert row["time_ratio"] > 0
        assert row["memory_ratio"] is None or row["memory_ratio"] >= 0


def test_scaling_rows_compare_with_lxl_attention_and_allocated_memory(tiny_results):
    _, payloads = tiny_results
    for row in payloads["bench_scaling"]["results"]:
        assert row["transformer_lxl"]["attention"] == "math" and row["transformer"]["attention"] == "auto"
        assert row["time_ratio_lxl"] > 0
        for key in ("vis4mer", "transformer", "transformer_lxl"):
            assert row[key]["allocated_extra_mib"] >= 0
        assert {"allocated_memory_ratio", "memory_ratio_lxl", "allocated_memory_ratio_lxl"} <= set(row)


def test_revision_bench_runs_both_trees_in_their_own_processes(tmp_path, monkeypatch):
    bench_revision = importlib.import_module("bench_revision")
    monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path))
    monkeypatch.setattr(common, "_INLINE", False)
    payload = bench_revision.main(["--against", "HEAD", "--preset", "tiny", "--device", "cpu", "--threads", "0"])
    (row,) = payload["results"]
    assert "error" not in row["this"] and "error" not in row["other"], row
    assert row["time_ratio"] > 0 and row["allocated_memory_ratio"] is not None
    assert payload["against"]["revision"] == "HEAD" and len(payload["against"]["commit"]) >= 7
    assert (tmp_path / f"revision_tiny_{common.device_tag()}.json").exists()


def test_revision_bench_names_a_bad_revision_and_refuses_inline(monkeypatch):
    bench_revision = importlib.import_module("bench_revision")
    monkeypatch.setattr(common, "_INLINE", False)  # parse_args sets it
    with pytest.raises(SystemExit, match="--against no-such-rev: git archive failed"):
        bench_revision.extract_library("no-such-rev", Path("/nonexistent"))
    with pytest.raises(SystemExit, match="drop --inline"):
        bench_revision.main(["--against", "HEAD", "--preset", "tiny", "--inline", "--threads", "0"])


def test_summary_table_quotes_the_json(tiny_results, monkeypatch):
    directory, payloads = tiny_results
    monkeypatch.setenv(common.RESULTS_ENV, str(directory))
    text = summary.table("tiny", common.device_tag())
    assert text.startswith("| measurement | value | size |")
    ratio = payloads["bench_scaling"]["headline"]["time_ratio"]
    assert f"| Transformer / ViS4mer training-step time | {ratio:.3g}× |" in text
    lxl = payloads["bench_scaling"]["headline"]["time_ratio_lxl"]
    assert f"| Transformer (L×L attention) / ViS4mer training-step time | {lxl:.3g}× |" in text
    assert "| Transformer / ViS4mer training-step memory (torch-allocated) |" in text
    assert text.splitlines()[2].endswith("| `python bench/bench_scaling.py --preset tiny` |")  # the command that wrote it
    assert "fp64 / fp16 HDF5 file size" in text and "measured step / floor" in text
    ram = payloads["bench_input"]["results"]["ram"]["ratio_to_host_memcpy"]
    assert f"| training loader, feature_cache ram / host memcpy | {ram:.3g}× |" in text


def test_input_bench_measures_every_cache_and_the_same_windows(tiny_results):
    _, payloads = tiny_results
    results = payloads["bench_input"]["results"]
    assert set(results) == {"none, 0 workers", "none, 2 workers", "ram"}  # gpu only on CUDA
    # every case delivers the same windows: 4 videos, 2 epochs, float32 [4·3, 16]
    assert {tuple((e["windows"], e["bytes"]) for e in r["epochs"]) for r in results.values()} == {((4, 4 * 12 * 16 * 4),) * 2}
    assert all(r["mb_per_s"] > 0 and r["ratio_to_host_memcpy"] > 0 for r in results.values())
    assert results["ram"]["load_seconds"] > 0 and payloads["bench_input"]["memcpy_mb_per_s"]["host"] > 0
