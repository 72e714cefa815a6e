"""``dfdetect gradcam``: Grad-CAM / Grad-CAM++ heatmaps for every face of images and folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from deepfake_cli.config import CAM_METHOD_NAMES
from deepfake_cli.cli.common import (
    default_of,
    EXIT_CODES_HELP_NO_VERDICT,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigOption,
    CsvOption,
    FormatOption,
    DeviceOption,
    JsonlOption,
    JsonOption,
    LargestFaceOption,
    MarginOption,
    MinFaceProbOption,
    MinFaceSizeOption,
    ModelOption,
    NoDetectOption,
    ThreadsOption,
    ThresholdOption,
    build_config,
    escape,
    face_overrides,
    handle_errors,
    note_no_match,
    note_source,
    prepare_runtime,
    plural,
    stderr,
)


def gradcam(
    sources: List[str] = typer.Argument(
        ..., help="Images, folders (recursive), globs, .txt lists of paths, or '-' to read paths from stdin."
    ),
    model: Optional[str] = ModelOption,
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help=f"Folder for heatmaps, overlays, sheets and gradcam.csv (default: a new {default_of('gradcam.out_dir')}/exp, exp2, ...)."),
    target: Optional[str] = typer.Option(
        None, "--target", help="What to explain: predicted, real, fake, a class name or index, or all (predicted + forced REAL + forced FAKE on one sheet)."
    ),
    method: Optional[str] = typer.Option(None, "--method", help=f"{' or '.join(CAM_METHOD_NAMES)} (default {default_of('gradcam.method')})."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Layer to explain, e.g. layer4.1 (default: the one the architecture declares)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help=f"Heatmap opacity in overlays, 0-1 (default {default_of('gradcam.alpha')})."),
    config: Optional[Path] = ConfigOption,
    format_: Optional[str] = FormatOption,
    json_: bool = JsonOption,
    jsonl: bool = JsonlOption,
    csv_: bool = CsvOption,
    threshold: Optional[float] = ThresholdOption,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Faces per Grad-CAM batch."),
    device: Optional[str] = DeviceOption,
    no_detect: bool = NoDetectOption,
    margin: Optional[float] = MarginOption,
    min_face_prob: Optional[float] = MinFaceProbOption,
    min_face_size: Optional[int] = MinFaceSizeOption,
    largest_face: bool = LargestFaceOption,
    threads: Optional[int] = ThreadsOption,
) -> None:
    """Explain a model's decision on every face with Grad-CAM heatmaps.

    Per face, in --out: the raw heatmap (.npy, 0-1, the crop's size), an overlay
    PNG and a sheet PNG (face | heatmap | overlay, verdict and confidence in the
    title; --target all gives the three-mode comparison). gradcam.csv in --out
    and the stdout records (table on a terminal, JSON Lines in a pipe, or
    --format json|jsonl|csv) list the files with p_fake and the mode. A file that
    cannot be read becomes an 'error' record and the batch goes on.
    """
    from deepfake_cli.output import choose_format

    with handle_errors():
        cfg = build_config(
            config,
            {
                "runtime.device": device,
                "runtime.num_threads": threads,
                "predict.threshold": threshold,
                "gradcam.target": target,
                "gradcam.method": method,
                "gradcam.layer": layer,
                "gradcam.alpha": alpha,
                "gradcam.batch_size": batch_size,
                **face_overrides(no_detect, margin, min_face_prob, min_face_size, largest_face),
                "model.name": model,
            },
        )
        fmt = choose_format(json_, jsonl, csv_, fmt=format_)
        code = run_gradcam(cfg, sources, fmt, out_dir)
    raise typer.Exit(code)


def run_gradcam(cfg, sources: list[str], fmt: str, out_dir: Optional[Path] = None) -> int:
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.config import save_resolved_config
    from deepfake_cli.errors import NoInputsError
    from deepfake_cli.inference.gradcam import GRADCAM_COLUMNS, INDEX_NAME, default_layer, explain_images, find_layer, parse_targets
    from deepfake_cli.media.images import IMAGE_EXTENSIONS
    from deepfake_cli.models.store import resolve_model
    from deepfake_cli.output import RecordWriter, ensure_output_dir
    from deepfake_cli.inference.pipeline import FacePipeline
    from deepfake_cli.inference.predict import STATUS_ERROR, STATUS_NO_FACE
    from deepfake_cli.media.sources import expand_sources

    gc = cfg.gradcam
    device = prepare_runtime(cfg)
    checkpoint = resolve_model(cfg.model.name)
    classifier = FaceClassifier.from_checkpoint(checkpoint, device=device)
    # Usage errors (target, layer) before detection models load or any file is written.
    modes = parse_targets(classifier.labels, gc.target)
    layer = gc.layer or default_layer(classifier.arch)
    find_layer(classifier.model, layer)
    pipeline = FacePipeline.from_config(classifier, cfg)
    paths = list(expand_sources(sources, extensions=IMAGE_EXTENSIONS, on_no_match=note_no_match, on_note=note_source))
    if not paths:
        raise NoInputsError(f"no image files found in: {' '.join(sources)}")

    if out_dir is not None:  # the folder asked for, as it is
        out = ensure_output_dir(out_dir)
    else:  # a fresh run folder each time, as train and evaluate make: nothing left from the run before
        from deepfake_cli.training.rundir import next_run_dir

        ensure_output_dir(gc.out_dir)
        out = next_run_dir(gc.out_dir, "exp")
    save_resolved_config(cfg.replace({"model.name": str(checkpoint)}), out)
    stderr.print(
        f"[dim]model {escape(classifier.name)} ({classifier.arch}), {gc.method} on {escape(layer)}, "
        f"target {escape(', '.join(modes))}, threshold {classifier.threshold:.3f}, device {device}, "
        f"face detection {'on' if pipeline.detector else 'off'}[/]"
    )

    images = faces = no_face = errors = blank = 0
    with open(out / INDEX_NAME, "w", encoding="utf-8", newline="") as index_file, \
            RecordWriter("csv", GRADCAM_COLUMNS, index_file) as index, \
            RecordWriter(fmt, GRADCAM_COLUMNS, sys.stdout, title="dfdetect gradcam") as writer:
        for rows in explain_images(
            paths, pipeline, out, modes, gc.method, layer, gc.alpha, gc.batch_size, cfg.predict.max_image_pixels
        ):
            images += 1
            status = rows[0]["status"]
            if status == STATUS_ERROR:
                errors += 1
                stderr.print(f"[yellow]skipped:[/] {escape(rows[0]['error'])}")
            elif status == STATUS_NO_FACE:
                no_face += 1
            else:
                faces += len({row["face"] for row in rows})
            for row in rows:
                index.write(row)
                writer.write(row)
                blank += bool(row.get("blank"))
    if blank:
        stderr.print(
            f"[yellow]note:[/] {blank} heatmap{'s are' if blank > 1 else ' is'} blank (column 'blank'): no region "
            "raises that target's score, so the map shows nothing rather than where to look"
        )
    stderr.print(
        f"{plural(images, 'image')}: {plural(faces, 'face')} explained, {no_face} without a face, {plural(errors, 'error')}; "
        f"files in {escape(str(out))} (index {escape(str(out / INDEX_NAME))})"
    )
    if errors == images:
        return EXIT_FATAL
    if errors:
        return EXIT_PARTIAL
    return EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("gradcam", epilog=EXIT_CODES_HELP_NO_VERDICT)(gradcam)
