"""``dfdetect predict``: score images (and, through the video scanner, videos)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from deepfake_cli.cli.common import (
    EXIT_CODES_HELP,
    EXIT_FAKE,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigOption,
    CsvOption,
    DeviceOption,
    JsonlOption,
    JsonOption,
    ModelOption,
    build_config,
    escape,
    handle_errors,
    prepare_runtime,
    stderr,
)


def predict(
    sources: List[str] = typer.Argument(
        ..., help="Images, folders (recursive), globs, .txt lists of paths, or '-' to read paths from stdin."
    ),
    model: Optional[str] = ModelOption,
    config: Optional[Path] = ConfigOption,
    json_: bool = JsonOption,
    jsonl: bool = JsonlOption,
    csv_: bool = CsvOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write results to this file instead of stdout."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Decision threshold on p_fake (default: the model's calibrated one)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Faces per inference batch."),
    device: Optional[str] = DeviceOption,
    no_detect: bool = typer.Option(False, "--no-detect", "--whole-image", help="Inputs are already face crops: skip face detection."),
    margin: Optional[float] = typer.Option(None, "--margin", help="Face crop margin (default: the framing the model was trained on)."),
    min_face_prob: Optional[float] = typer.Option(None, "--min-face-prob", help="Minimum face detection probability."),
    min_face_size: Optional[int] = typer.Option(None, "--min-face-size", help="Minimum face size in pixels."),
    largest_face: bool = typer.Option(False, "--largest-face", help="Score only the largest face of each image."),
    fail_on_fake: bool = typer.Option(False, "--fail-on-fake", help="Exit with code 3 when any input is judged fake."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for inference."),
) -> None:
    """Score faces in images: one record per image, verdict = its most suspicious face.

    Output is a table on a terminal and JSON Lines in a pipe, or --json/--jsonl/--csv.
    A file that cannot be read becomes an 'error' record and the batch goes on; an
    image without a face gets status 'no_face'.
    """
    from deepfake_cli.output import choose_format

    with handle_errors():
        cfg = build_config(
            config,
            {
                "runtime.device": device,
                "runtime.num_threads": threads,
                "predict.threshold": threshold,
                "predict.batch_size": batch_size,
                "face.detect": False if no_detect else None,
                "face.margin": margin,
                "face.min_prob": min_face_prob,
                "face.min_size": min_face_size,
                "face.select": "largest" if largest_face else None,
                "model.name": model,
            },
        )
        fmt = choose_format(json_, jsonl, csv_, out=None if out is None else str(out))
        code = run_predict(cfg, sources, fmt, out, fail_on_fake)
    raise typer.Exit(code)


def run_predict(cfg, sources: list[str], fmt: str, out: Optional[Path], fail_on_fake: bool) -> int:
    from deepfake_cli.classifier import FaceClassifier
    from deepfake_cli.errors import NoInputsError
    from deepfake_cli.model_store import resolve_model
    from deepfake_cli.output import RecordWriter
    from deepfake_cli.pipeline import FacePipeline
    from deepfake_cli.predict import IMAGE_COLUMNS, PredictSummary, flat_image_row, predict_images
    from deepfake_cli.sources import expand_sources

    device = prepare_runtime(cfg)
    checkpoint = resolve_model(cfg.model.name)
    classifier = FaceClassifier.from_checkpoint(checkpoint, device=device)
    pipeline = FacePipeline.from_config(classifier, cfg)
    stderr.print(
        f"[dim]model {escape(classifier.name)} ({classifier.arch}), threshold {classifier.threshold:.3f}, "
        f"device {device}, face detection {'on' if pipeline.detector else 'off'}[/]"
    )

    summary = PredictSummary()
    paths = expand_sources(sources)
    stream = sys.stdout if out is None else open(out, "w", encoding="utf-8", newline="")
    try:
        with RecordWriter(fmt, IMAGE_COLUMNS, stream, flatten=flat_image_row, title="dfdetect predict") as writer:
            for record in predict_images(paths, pipeline, cfg.predict.max_image_pixels):
                writer.write(record)
                summary.add(record)
                if record["status"] == "error":
                    stderr.print(f"[yellow]skipped:[/] {escape(record['error'])}")
    finally:
        if out is not None:
            stream.close()
    if summary.total == 0:
        raise NoInputsError(f"no image files found in: {' '.join(sources)}")
    stderr.print(
        f"{summary.total} inputs: {summary.fake} fake, {summary.real} real, "
        f"{summary.no_face} without a face, {summary.errors} errors"
    )
    if summary.processed == 0:
        return EXIT_FATAL
    if fail_on_fake and summary.fake:
        return EXIT_FAKE
    if summary.errors:
        return EXIT_PARTIAL
    return EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("predict", epilog=EXIT_CODES_HELP)(predict)
