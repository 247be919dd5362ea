"""The ``vis4mer`` command: one sub-command per task (``vis4mer predict ...``).

Exit status: 0 when everything succeeded, 1 when some input failed (the others were still
processed), 2 for usage errors (bad arguments, a missing or unusable --model).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from vis4mer import __doc__ as package_doc
    from vis4mer import version

    parser = argparse.ArgumentParser(
        prog="vis4mer",
        description=package_doc.strip().splitlines()[0] if package_doc else "vis4mer",
        epilog="Run 'vis4mer <command> --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages of the library to stderr")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    _add_predict(commands)
    _add_fetch_weights(commands)
    _add_doctor(commands)
    return parser


def _add_fetch_weights(commands) -> None:
    fetch = commands.add_parser(
        "fetch-weights",
        help="put a backbone's pretrained weights into the cache (once, on a machine with internet)",
        description=(
            "Download a backbone's public weights into the cache of the library that owns them (timm ViTs: the "
            "Hugging Face hub cache, HF_HUB_CACHE; Video Swin: torch.hub's, TORCH_HOME) and print their identity. "
            "Run it on a login node with internet; jobs on nodes without internet then load the cached file "
            "(HF_HUB_OFFLINE=1)."
        ),
        epilog="Exit status: 0 when the weights are in the cache, 1 when they could not be had, 2 for usage errors.",
    )
    fetch.add_argument("--backbone", required=True, action="append",
                       help="timm model name (e.g. vit_large_patch16_224.augreg_in21k) or a vis4mer.swin.BACKBONES name; repeatable")
    fetch.add_argument("--sha256", help="the sha256 the downloaded file must have (release URLs)")
    fetch.set_defaults(handler=run_fetch_weights)


def run_fetch_weights(args: argparse.Namespace) -> int:
    from vis4mer.swin import BACKBONES
    from vis4mer.weights import PRETRAINED, WeightsUnavailable, resolve_weights

    status = EXIT_OK
    for backbone in args.backbone:
        url = BACKBONES[backbone].url if backbone in BACKBONES else None
        if backbone in BACKBONES and url is None:
            _error(f"{backbone} has no released weights")
            status = EXIT_FAILED
            continue
        try:
            resolved = resolve_weights(PRETRAINED, backbone, url=url, sha256=args.sha256)
        except WeightsUnavailable as error:
            _error(str(error))
            status = EXIT_FAILED
            continue
        print(f"{backbone}: {resolved.identity} ({resolved.file}, sha256 {resolved.sha256})")
    return status


def _add_doctor(commands) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a machine before a long run: GPUs, decoders and codecs, weights, downloads, inputs, disk space",
        description=(
            "For the configured datasets, report what is ready and what is missing, each with the fix: GPUs and the "
            "CUDA Cauchy kernel, ffmpeg and which codecs each decoder reads (AV1 matters: YouTube serves it), "
            "yt-dlp's JavaScript runtime, the backbone weights (cached or fetchable), the split files and videos, and "
            "the disk space the downloads, frames and features need against what is free where they go."
        ),
        epilog="Exit status: 0 when nothing blocks the run (warnings allowed), 1 when something does, 2 for usage errors.",
    )
    doctor.add_argument("--configfile", action="append", default=[], type=Path,
                        help="config files merged over config/config.yaml, as snakemake --configfile (repeatable)")
    doctor.add_argument("--dataset", action="append", default=[], help="datasets to check (default: the config's targets)")
    doctor.add_argument("--results", type=Path, default=Path("results"), help="where results are written (default: results)")
    doctor.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vis4mer.atomic import write_json
    from vis4mer.config import ConfigError, load_config
    from vis4mer.doctor import format_table, run_checks

    try:
        config = load_config([Path("config/config.yaml"), *args.configfile])
        rows = run_checks(config, args.dataset or None, args.results)
    except (ConfigError, OSError, ValueError) as error:
        _error(str(error))
        return EXIT_USAGE
    print(format_table(rows))
    blocking = [row for row in rows if row.blocking]
    print(f"\n{len(blocking)} blocking, {sum(r.status == 'warn' for r in rows)} warnings, {len(rows)} checks")
    if args.json:
        write_json(args.json, {"rows": [asdict(row) for row in rows], "blocking": len(blocking)})
    return EXIT_FAILED if blocking else EXIT_OK


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="predict labels of new videos with a trained checkpoint (batch or streaming)",
        description=(
            "Decode each video, extract features with the backbone the model was trained on, and print the "
            "model's prediction over all windows, as the pipeline's evaluation computes it. Frame rate, frame "
            "size, decoder, backbone, weights, window and tokens all come from the checkpoint."
        ),
        epilog=(
            "Exit status: 0 if every video was predicted, 1 if any failed (the others are still predicted; "
            "errors go to stderr and into the JSON), 2 for usage errors (e.g. a missing or unusable --model)."
        ),
    )
    predict.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR",
                         help="video files, or directories (their video files, by extension, sorted)")
    predict.add_argument("--model", "-m", required=True, metavar="CHECKPOINT",
                         help="a training checkpoint, e.g. results/<dataset>/<task>/<model>/best.pt")
    predict.add_argument("--top-k", "-k", type=_positive_int, default=5, metavar="K",
                         help="classes shown per video (default 5; all of them in the JSON's probabilities)")
    predict.add_argument("--json", metavar="PATH|-", help="also write machine-readable results to PATH ('-': stdout only JSON); never over an input video "
                              "or an existing file that is not JSON")
    predict.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    predict.add_argument("--stride", type=_positive_int, metavar="FRAMES",
                         help="window stride in frames (default: the checkpoint's evaluation stride, or 1)")
    predict.add_argument("--stream", action="store_true",
                         help="streaming mode (vis4mer models only): recurrent, frame by frame, memory bounded by one window")
    predict.add_argument("--every", type=_positive_float, default=10.0, metavar="SECONDS",
                         help="with --stream: print the running prediction every SECONDS of video (default 10)")
    predict.add_argument("--backbone-checkpoint", metavar="PATH",
                         help="where the backbone's weights file is, when not at the path recorded at feature "
                              "extraction; its sha256 must be the recorded weights id")
    predict.add_argument("--batch-size", type=_positive_int, default=32,
                         help="frames per backbone forward and windows per model forward (default 32)")
    predict.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    predict.add_argument("--no-progress", action="store_true", help="no progress bars")
    predict.set_defaults(handler=run_predict)


def _error(message: str) -> None:
    print(f"vis4mer: error: {message}", file=sys.stderr, flush=True)


def json_target_problem(path: Path, inputs: Sequence[Path]) -> str | None:
    """Why ``--json PATH`` must not be written, or None: PATH is one of the `inputs` (a video
    given, or found in a directory given), a directory, or an existing file that is not JSON
    (the results of an earlier ``--json`` are the only file it may replace)."""
    if path.is_dir():
        return f"--json {path} is a directory; name a file"
    if not path.exists():
        return None
    if any(video.exists() and path.samefile(video) for video in inputs):
        return f"--json {path} is one of the input videos; writing the results there would destroy it"
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return f"--json {path} exists and is not a JSON file; it is not overwritten (remove it or choose another path)"
    return None


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from vis4mer.checkpoint import CheckpointError
    from vis4mer.frames import VideoError
    from vis4mer.predict import PredictError, Predictor, expand_inputs

    if args.threads:
        torch.set_num_threads(args.threads)
    json_to_stdout = args.json == "-"
    out = sys.stderr if json_to_stdout else sys.stdout  # stdout holds only the JSON with --json -
    progress = False if args.no_progress else None  # None: bars only on a terminal (tqdm)
    inputs = expand_inputs(args.videos)
    if args.json is not None and not json_to_stdout:
        if problem := json_target_problem(Path(args.json), [path for _, path, _ in inputs if path is not None]):
            _error(problem)
            return EXIT_USAGE
    try:
        predictor = Predictor(
            args.model,
            device=args.device,
            backbone_checkpoint=args.backbone_checkpoint,
            stride_frames=args.stride,
            feature_batch_size=args.batch_size,
            window_batch_size=args.batch_size,
            progress=progress,
        )
        if args.stream:
            predictor.check_streamable()
    except (CheckpointError, PredictError) as error:
        _error(str(error))
        return EXIT_USAGE
    spec = predictor.spec
    results: list[dict[str, Any]] = []
    from tqdm.auto import tqdm

    bar = tqdm(inputs, desc="videos", unit="video", disable=progress is False or len(inputs) < 2 or None)
    for shown, path, error in bar:
        entry: dict[str, Any] = {"input": shown, "path": str(path) if path is not None else None}
        if error is None:
            try:
                if args.stream:
                    on_update = None if json_to_stdout else (lambda update, name=shown: _print_running(out, name, update, spec))
                    prediction = predictor.stream(path, args.every, on_update)
                else:
                    prediction = predictor.predict(path)
            except VideoError as failure:
                error = str(failure)
            except Exception as failure:  # an unforeseen failure of one video must not stop the others
                error = f"{type(failure).__name__}: {failure}"
        if error is not None:
            bar.clear()
            _error(error)
            results.append({**entry, "status": "error", "error": error})
            continue
        entry.update(
            {
                "status": "ok",
                "n_frames": prediction.n_frames,
                "duration_s": prediction.n_frames / spec.fps,
                "n_windows": prediction.n_windows,
                "seconds": round(prediction.seconds, 4),
                **predictor.describe(prediction.vector, prediction.n_windows, args.top_k),
                "vector": [float(v) for v in prediction.vector],
            }
        )
        if args.stream:
            entry["running"] = prediction.running
        results.append(entry)
        if not json_to_stdout:
            bar.clear()
            _print_result(out, entry, spec)
    bar.close()
    n_failed = sum(entry["status"] != "ok" for entry in results)
    report = {
        "model": str(args.model),
        "checkpoint": predictor.checkpoint_info,
        "task": {"type": spec.task_type, "label_names": list(spec.label_names),
                 **({"label_column": spec.label_column, "label_transform": spec.label_transform} if spec.task_type == "regression" else {})},
        "mode": "stream" if args.stream else "batch",
        "window_frames": spec.window_frames,
        "stride_frames": predictor.stride,
        "tokens": spec.tokens,
        "fps": spec.fps,
        "backbone": spec.backbone,
        "weights": spec.weights,
        "device": str(predictor.device),
        "n_videos": len(results),
        "n_ok": len(results) - n_failed,
        "n_failed": n_failed,
        "videos": results,
    }
    if args.json is not None:
        text = json.dumps(report, indent=2, allow_nan=True)
        if json_to_stdout:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        else:
            from vis4mer.atomic import write_text

            write_text(Path(args.json), text + "\n")
    if n_failed:
        _error(f"{n_failed} of {len(results)} inputs failed")
    return EXIT_FAILED if n_failed else EXIT_OK


def _format(entry: dict[str, Any], spec) -> str:
    if spec.task_type == "classification":
        return f"{entry['label']} ({entry['probability']:.4f})"
    return f"{entry['quantity']} = {entry['value']:.6g} (target {entry['target']:.4f})"


def _print_result(out, entry: dict[str, Any], spec) -> None:
    windows = f"{entry['n_windows']} window{'s' if entry['n_windows'] != 1 else ''}"
    print(f"{entry['input']}: {_format(entry, spec)}  [{entry['n_frames']} frames, {windows}, {entry['seconds']:.2f} s]", file=out)
    if spec.task_type == "classification":
        for rank, item in enumerate(entry["top_k"], start=1):
            print(f"  {rank:>2}. {item['label']:<24} {item['probability']:.4f}", file=out)
    out.flush()


def _print_running(out, name: str, update: dict[str, Any], spec) -> None:
    windows = f"{update['n_windows']} complete window{'s' if update['n_windows'] != 1 else ''}" if update["n_windows"] else "window open"
    print(f"{name} @ {update['t']:.0f}s: {_format(update, spec)}  [{windows}]", file=out, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
