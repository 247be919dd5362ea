"""Feature extraction, the pipeline's other cost: ViT-L/16 frames per second against the
device's matmul roofline, and video decoding frames per second per core, decord vs torchcodec.

  vit     timm vit_large_patch16_224 (random weights) forward_features on 224² frames:
          bf16 autocast + SDPA attention on CUDA, fp32 on CPU. The roofline is the measured
          large-GEMM rate (bf16 on CUDA, fp32 on CPU) divided by the FLOPs per frame.
  decode  H.264 files generated here with PyAV (640×360, 30 fps, 20 s), decoded at 1 fps and
          resized/cropped to 224 by vis4mer.frames.decode_video, decord vs torchcodec, one
          thread (torch and the decoder), on the same files.

    python bench/bench_extraction.py --preset lvu   # batch 256, 4 videos (GPU)
    python bench/bench_extraction.py --preset cpu   # batch 2, two batches; 2 videos
    python bench/bench_extraction.py --preset lvu --parts vit   # the ViT alone (no decoders needed)
"""

from __future__ import annotations

import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_rate, parse_args, parts_argument, plot_bars, ratio, side_by_side, time_repeated, write_json  # noqa: E402

PARTS = ("vit", "decode")
DECODERS = ("decord", "torchcodec")
VIDEO = dict(width=640, height=360, fps=30, seconds=20, sample_fps=1.0, size=224)
PRESETS = {
    # vit on an H100/H200: ~3000-5000 frames/s, so 7 batches of 256 are ~0.5 s, plus the
    # GEMM and two process starts: ~15 s for --parts vit
    "lvu": dict(
        vit=dict(model="vit_large_patch16_224", img_size=224, batch=256, warmup=2, repeats=5),
        gemm=dict(n=16384, repeats=10), decode=dict(VIDEO, videos=4, rounds=1), rounds=1,
    ),
    "cpu": dict(
        vit=dict(model="vit_large_patch16_224", img_size=224, batch=2, warmup=1, repeats=1),
        gemm=dict(n=2048, repeats=5), decode=dict(VIDEO, videos=2, rounds=2), rounds=2,
    ),
    "tiny": dict(
        vit=dict(model="vit_tiny_patch16_224", img_size=32, batch=1, warmup=0, repeats=1),
        gemm=dict(n=64, repeats=1), decode=dict(width=64, height=48, fps=10, seconds=2, sample_fps=1.0, size=32, videos=1, rounds=1), rounds=1,
    ),
}


def vit_flops_per_frame(depth: int, dim: int, img_size: int, patch: int = 16, mlp_ratio: int = 4, channels: int = 3) -> int:
    """Forward FLOPs of a ViT on one image (softmax, LayerNorm, GELU and biases left out).

    tokens T = (img_size / patch)² + 1 (the class token); per block:
      qkv and output projections  2·T·d·3d + 2·T·d·d
      QKᵀ and attention · V       2·T²·d + 2·T²·d   (all heads together)
      MLP d -> 4d -> d            2·T·d·4d · 2
    plus the patch embedding 2·(T-1)·(3·patch²)·d.
    ViT-L/16 at 224²: 24 blocks, d=1024, T=197 -> 1.23e11 (61.6 GMACs).
    """
    tokens = (img_size // patch) ** 2 + 1
    projections = 2 * tokens * dim * 3 * dim + 2 * tokens * dim * dim
    attention = 2 * 2 * tokens * tokens * dim
    mlp = 2 * 2 * tokens * dim * mlp_ratio * dim
    patch_embed = 2 * (tokens - 1) * channels * patch**2 * dim
    return patch_embed + depth * (projections + attention + mlp)


# ---- ViT ------------------------------------------------------------------------------------
def vit_case(preset: dict, device: str) -> dict:
    from vis4mer.compat import import_timm

    timm = import_timm()
    dev = torch.device(device)
    torch.manual_seed(0)
    model = timm.create_model(preset["model"], pretrained=False, img_size=preset["img_size"]).eval().to(dev)
    images = torch.randn(preset["batch"], 3, preset["img_size"], preset["img_size"], device=dev)
    autocast = dev.type == "cuda"

    @torch.inference_mode()
    def encode():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            model.forward_features(images)

    timing = time_repeated(encode, dev, preset["warmup"], preset["repeats"])
    blocks = len(model.blocks)
    return {
        "model": preset["model"],
        "depth": blocks,
        "dim": model.embed_dim,
        "fused_attention": bool(getattr(model.blocks[0].attn, "fused_attn", False)),
        "autocast_bf16": autocast,
        "batch": preset["batch"],
        "frames_per_s": preset["batch"] / timing["min_seconds"],
        **timing,
    }


# ---- decoding -------------------------------------------------------------------------------
def write_test_video(path: Path, width: int, height: int, fps: int, seconds: float, seed: int = 0) -> None:
    """H.264 (yuv420p, x264 veryfast, QP 23): a camera pan over a textured colour scene, a
    moving square and mild sensor-like noise, so the decoder sees motion, texture and residuals
    (about 1 Mbit/s at 640×360, like a 360p web video)."""
    import av

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : 2 * height, 0 : 2 * width].astype(np.float32)
    scene = np.stack([xs % 256, ys % 256, (xs + ys) % 256], axis=-1) / 2 + 64
    scene += rng.normal(0, 16, scene.shape[:2] + (1,)).astype(np.float32)  # texture
    noise = rng.normal(0, 2, (8, height, width, 3)).astype(np.float32)  # a few noise frames, cycled
    side = max(4, height // 4)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "23", "preset": "veryfast"}
        for k in range(int(fps * seconds)):
            x0, y0 = (2 * k) % width, k % height  # pan
            frame = scene[y0 : y0 + height, x0 : x0 + width] + noise[k % len(noise)]
            top, left = (k * 3) % (height - side), (k * 5) % (width - side)
            frame[top : top + side, left : left + side] = 255.0
            array = np.clip(frame, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def decode_case(decoder: str, paths: list[str], sample_fps: float, size: int) -> dict:
    from vis4mer.frames import decode_video

    torch.set_num_threads(1)  # the resize; both decoders are opened single-threaded by vis4mer.frames
    decode_video(paths[0], sample_fps, size, decoder)  # warm-up: library initialisation
    sampled = native = 0
    start = time.perf_counter()
    for path in paths:
        frames, _, n_native = decode_video(path, sample_fps, size, decoder)
        sampled, native = sampled + len(frames), native + n_native
    seconds = time.perf_counter() - start
    return {
        "decoder": decoder,
        "videos": len(paths),
        "seconds": seconds,
        "sampled_frames": sampled,
        "native_frames": native,
        "sampled_frames_per_s": sampled / seconds,
        "native_frames_per_s": native / seconds,
    }


def measure_decode(preset: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as directory:
        paths = []
        start = time.perf_counter()
        for i in range(preset["videos"]):
            paths.append(str(Path(directory) / f"video_{i}.mp4"))
            write_test_video(Path(paths[-1]), preset["width"], preset["height"], preset["fps"], preset["seconds"], seed=i)
        encode_seconds = time.perf_counter() - start
        cases = {name: (decode_case, name, paths, preset["sample_fps"], preset["size"]) for name in DECODERS}
        results = side_by_side(cases, preset["rounds"], key=lambda r: r.get("seconds"))
    seconds = {name: result.get("seconds") for name, result in results.items()}
    return {
        "videos": preset,
        "encode_seconds": encode_seconds,
        "decoders": results,
        "decord_over_torchcodec_speed": ratio(seconds["torchcodec"], seconds["decord"]),
    }


def measure_vit(preset: dict, device: str) -> tuple[dict, dict]:
    """(the GEMM rate, the ViT's frames/s with its FLOPs and roofline): bf16 on CUDA, fp32 on CPU."""
    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    cases = {"gemm": (matmul_rate, device, dtype, preset["gemm"]["n"], preset["gemm"]["repeats"]), "vit": (vit_case, preset["vit"], device)}
    gemm, vit = side_by_side(cases, preset["rounds"]).values()
    flops = vit_flops_per_frame(vit.get("depth", 0), vit.get("dim", 0), preset["vit"]["img_size"]) if "depth" in vit else None
    roofline = gemm["flop_per_s"] / flops if flops and "flop_per_s" in gemm else None
    vit_result = vit | {
        "flops_per_frame": flops,
        "roofline_frames_per_s": roofline,
        "fraction_of_roofline": ratio(vit.get("frames_per_s"), roofline),
    }
    print("gemm", gemm, "vit", vit_result, sep="\n", flush=True)
    return gemm, vit_result


def main(argv: list[str] | None = None) -> dict:
    args, preset = parse_args(__doc__, PRESETS, argv, parts_argument(PARTS))
    payload = {"preset": args.preset, "device": args.device, "parts": args.parts}
    headline, panels = {}, []
    if "vit" in args.parts:
        gemm, vit = measure_vit(preset, args.device)
        payload |= {"matmul": gemm, "vit": vit}
        headline |= {
            "vit_frames_per_s": vit.get("frames_per_s"),
            "vit_roofline_frames_per_s": vit["roofline_frames_per_s"],
            "vit_fraction_of_roofline": vit["fraction_of_roofline"],
        }
        panels.append(dict(title=f"{preset['vit']['model']} ({gemm.get('dtype', '?')})", xlabel="frames / s",
                           bars={"measured": vit.get("frames_per_s"), "matmul roofline": vit["roofline_frames_per_s"]}))
    if "decode" in args.parts:
        decode = measure_decode(preset["decode"])
        print("decode", decode, flush=True)
        payload["decode"] = decode
        headline |= {
            **{f"{name}_frames_per_s_per_core": r.get("sampled_frames_per_s") for name, r in decode["decoders"].items()},
            "decord_over_torchcodec_speed": decode["decord_over_torchcodec_speed"],
        }
        panels.append(dict(title="decode at 1 fps, one core", xlabel="sampled frames / s",
                           bars={name: r.get("sampled_frames_per_s") for name, r in decode["decoders"].items()}))
    payload["headline"] = headline
    name = f"extraction_{args.preset}"
    path = write_json(name, payload)
    print(f"wrote {path} and {plot_bars(name, panels, f'Feature extraction ({args.device}, preset {args.preset})')}")
    return payload


if __name__ == "__main__":
    main()
