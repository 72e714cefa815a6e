"""``dfdetect video``: scan videos frame by frame; per-frame CSV, annotated video, verdict per video."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer

from deepfake_cli.cli.common import (
    default_of,
    EXIT_CODES_HELP,
    BorderlineBandOption,
    ConfigOption,
    DeviceOption,
    FormatOption,
    JsonlOption,
    JsonOption,
    LargestFaceOption,
    MarginOption,
    MinFaceProbOption,
    MinFaceSizeOption,
    ModelOption,
    NoDetectOption,
    RayActorsOption,
    RayAddressOption,
    RayOption,
    ThreadsOption,
    ThresholdOption,
    TtaOption,
    batch_counts,
    batch_exit_code,
    build_config,
    escape,
    face_overrides,
    handle_errors,
    load_classifier,
    note_no_match,
    note_source,
    ray_overrides,
    running_counts,
    stderr,
)


def video(
    sources: List[str] = typer.Argument(
        ..., help="Videos (mp4, avi, mov, mkv, webm), folders (recursive), globs, .txt lists, or '-' for paths on stdin."
    ),
    model: Optional[str] = ModelOption,
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Per-frame rows (one per face, or one 'no_face' row per sampled frame) to this CSV ('-': stdout; .jsonl/.json by extension)."
    ),
    annotate: Optional[Path] = typer.Option(
        None, "--annotate", "-a", help="Annotated copy of the video (.mp4, .avi, .mov, .mkv), or a folder for several videos."
    ),
    format_: Optional[str] = FormatOption,
    json_: bool = JsonOption,
    jsonl: bool = JsonlOption,
    every: Optional[int] = typer.Option(None, "--every", "-n", help=f"Score every Nth frame (default {default_of('video.every')})."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Score F frames per second instead of --every."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Score K evenly spaced frames instead of --every."),
    start: Optional[float] = typer.Option(None, "--start", help="Start at this time (seconds)."),
    end: Optional[float] = typer.Option(None, "--end", help="Stop before this time (seconds): --start 0 --end 60 and --start 60 --end 120 share no frame."),
    aggregate: Optional[str] = typer.Option(
        None, "--aggregate", help="How a track's face scores become one: confident (DFDC winner, default), mean or max."
    ),
    threshold: Optional[float] = ThresholdOption,
    borderline_band: Optional[float] = BorderlineBandOption,
    tta: Optional[str] = TtaOption,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Faces per classification batch."),
    detect_max_side: Optional[int] = typer.Option(
        None, "--detect-max-side", help=f"Search faces as if frames were shrunk to this longer side: caps the cost, boxes stay full-frame MTCNN's (default {default_of('video.detect_max_side')})."
    ),
    redetect: Optional[float] = typer.Option(
        None, "--redetect", help=f"Seconds between whole-frame face searches; frames in between are searched around tracked faces and where the frame changed (default {default_of('video.redetect_every')}; 0: every sampled frame whole)."
    ),
    no_detect: bool = NoDetectOption,
    margin: Optional[float] = MarginOption,
    min_face_prob: Optional[float] = MinFaceProbOption,
    min_face_size: Optional[int] = MinFaceSizeOption,
    largest_face: bool = LargestFaceOption,
    fail_on_fake: bool = typer.Option(False, "--fail-on-fake", help="Exit with code 3 when any video is judged fake."),
    config: Optional[Path] = ConfigOption,
    device: Optional[str] = DeviceOption,
    threads: Optional[int] = ThreadsOption,
    ray: bool = RayOption,
    ray_address: Optional[str] = RayAddressOption,
    ray_actors: Optional[int] = RayActorsOption,
) -> None:
    """Scan videos for deepfaked faces: a verdict per video, per-frame scores, an annotated copy.

    Frames are sampled (--every, --fps or --frames, within --start/--end) and decoded
    sequentially; all faces are detected, linked into tracks across frames and scored.
    Each track's scores are aggregated (--aggregate) and a video is fake when any track
    is. A video without any face gets verdict 'no_face'. A video that cannot be read
    becomes an 'error' record and the others go on.

    The per-video summaries go to stdout (a table on a terminal, JSON Lines in a pipe,
    or --format json|jsonl|csv); with --out - the per-frame CSV takes stdout instead.
    """
    from deepfake_cli.errors import UsageError

    with handle_errors():
        given = [name for name, value in (("--every", every), ("--fps", fps), ("--frames", frames)) if value is not None]
        if len(given) > 1:
            raise UsageError(f"choose one way to sample frames, not {' and '.join(given)}")
        from deepfake_cli.config import validate
        from deepfake_cli.inference.video import with_sampling
        rows_to_stdout = out is not None and str(out) == "-"
        if rows_to_stdout and (json_ or jsonl or format_):
            raise UsageError("--out - writes the per-frame rows to stdout; write them to a file to use --format/--json/--jsonl")
        cfg = build_config(
            config,
            {
                "runtime.device": device,
                "runtime.num_threads": threads,
                "predict.threshold": threshold,
                "predict.borderline_band": borderline_band,
                "predict.tta": tta,
                "predict.batch_size": batch_size,
                "model.name": model,
                "video.start": start,
                "video.end": end,
                "video.aggregate": aggregate,
                "video.detect_max_side": detect_max_side,
                "video.redetect_every": redetect,
                **face_overrides(no_detect, margin, min_face_prob, min_face_size, largest_face),
                **ray_overrides(ray, ray_address, ray_actors),
            },
        )
        # The way of sampling given here replaces the configured one (file, environment).
        cfg.video = with_sampling(cfg.video, every, fps, frames)
        validate(cfg)
        code = run_video(cfg, sources, out, annotate, json_, jsonl, fail_on_fake, fmt=format_)
    raise typer.Exit(code)


def run_video(cfg, sources: list[str], out: Optional[Path], annotate: Optional[Path], json_: bool, jsonl: bool,
              fail_on_fake: bool, fmt: Optional[str] = None) -> int:
    from deepfake_cli.errors import InputFileError, NoInputsError
    from deepfake_cli.media.images import VIDEO_EXTENSIONS
    from deepfake_cli.output import check_not_an_input, choose_format, finish_output, format_from_extension, open_output_file
    from deepfake_cli.inference.predict import PredictSummary
    from deepfake_cli.inference.records import borderline_caption
    from deepfake_cli.media.sources import expand_sources
    from deepfake_cli.inference.video import (
        FRAME_COLUMNS,
        SUMMARY_COLUMNS,
        SUMMARY_CSV_COLUMNS,
        error_row,
        error_summary,
        flat_summary,
        scan_video,
        table_summary,
        video_pipeline,
    )

    paths = list(expand_sources(sources, VIDEO_EXTENSIONS, on_no_match=note_no_match, on_note=note_source))
    if not paths:
        raise NoInputsError(f"no video files found in: {' '.join(sources)}")
    targets = annotation_targets(annotate, paths)
    rows_to_stdout = out is not None and str(out) == "-"
    summaries_fmt = None if rows_to_stdout else choose_format(json_, jsonl, False, None, fmt=fmt)
    rows_fmt = "csv" if rows_to_stdout or out is None else format_from_extension(out) or "csv"
    rows_stream = None
    if out is not None:  # opened before the model loads, so that a bad --out fails at once
        if not rows_to_stdout and out.exists():  # only a file there already can be an input
            for path in paths:
                check_not_an_input(out, path)
        rows_stream = sys.stdout if rows_to_stdout else open_output_file(out)
    counts = PredictSummary()
    complete = False
    ray_scans = None
    try:
        if cfg.ray.enabled:  # the same scans on Ray actors (dfdetect[ray]), taken in order
            from deepfake_cli.cluster.ray_pool import VideoScans

            ray_scans = VideoScans(paths, targets, cfg, want_rows=rows_stream is not None,
                                   note=lambda text: stderr.print(f"[dim]{escape(text)}[/]"))
            classifier, pipeline, scan_video = ray_scans, None, ray_scans.scan
        else:
            classifier = load_classifier(cfg)
            pipeline = video_pipeline(classifier, cfg)
        with _maybe_writer(rows_stream, rows_fmt, FRAME_COLUMNS) as rows, \
                _maybe_writer(None if summaries_fmt is None else sys.stdout, summaries_fmt, SUMMARY_COLUMNS,
                              flatten=flat_summary, table_row=table_summary, csv_columns=SUMMARY_CSV_COLUMNS,
                              title="dfdetect video") as summaries:
            for number, (path, target) in enumerate(zip(paths, targets), 1):
                batch = (number, len(paths), counts) if len(paths) > 1 else None
                with scan_progress(path, batch) as progress:
                    try:
                        summary = scan_video(path, pipeline, cfg.video, annotate_path=target, progress=progress,
                                             on_row=None if rows is None else rows.write, keep_rows=False).summary
                    except InputFileError as exc:
                        summary = error_summary(path, str(exc), classifier.name)
                        if rows is not None:
                            rows.write(error_row(path, str(exc)))
                counts.add(summary)
                if summaries is not None:
                    summaries.write(summary)
                report_video(summary)
            if counts.borderline and summaries is not None:
                summaries.caption = borderline_caption(cfg.predict.borderline_band)
        complete = True
    finally:
        if ray_scans is not None:
            ray_scans.close()  # stops its actors (and a cluster it started) on Ctrl-C or an error
        if rows_stream is not None and not rows_to_stdout:
            # Stopped part-way (Ctrl-C, SIGTERM, an error): --out keeps what it held before.
            finish_output(rows_stream, complete)
    if rows_stream is not None and not rows_to_stdout:
        stderr.print(f"wrote {escape(str(out))}")
    stderr.print(batch_counts(counts, "video"))
    return batch_exit_code(counts, fail_on_fake)


def annotation_targets(annotate: Optional[Path], paths: list[Path]) -> list[Optional[Path]]:
    """Where each video's annotated copy goes: the file given, or ``<folder>/<name>.annotated.mp4``."""
    from deepfake_cli.media.annotate import FOURCC_BY_SUFFIX
    from deepfake_cli.errors import UsageError
    from deepfake_cli.output import ensure_output_dir

    if annotate is None:
        return [None] * len(paths)
    if annotate.suffix.lower() in FOURCC_BY_SUFFIX and not annotate.is_dir():
        if len(paths) > 1:
            raise UsageError(f"--annotate {annotate} names one file but {len(paths)} videos were given: pass a folder")
        if annotate.resolve() == Path(paths[0]).resolve():
            raise UsageError("--annotate must not overwrite the input video")
        ensure_output_dir(annotate.parent)
        return [annotate]
    if annotate.suffix and not annotate.is_dir():
        raise UsageError(f"--annotate {annotate}: use a video file name ({', '.join(FOURCC_BY_SUFFIX)}) or a folder")
    ensure_output_dir(annotate)
    targets: list[Optional[Path]] = []
    used: set[str] = set()
    for path in paths:
        name = f"{Path(path).stem}.annotated.mp4"
        k = 1
        while name in used:  # same file name in two folders
            k += 1
            name = f"{Path(path).stem}.{k}.annotated.mp4"
        used.add(name)
        targets.append(annotate / name)
    return targets


@contextlib.contextmanager
def _maybe_writer(stream, fmt: Optional[str], columns, **kw: Any) -> Iterator[Any]:
    """A RecordWriter when there is a stream to write to, else ``None``."""
    from deepfake_cli.output import RecordWriter

    if stream is None or fmt is None:
        yield None
        return
    with RecordWriter(fmt, columns, stream, **kw) as writer:
        yield writer


@contextlib.contextmanager
def scan_progress(path: Path, batch: Optional[tuple[int, int, Any]] = None) -> Iterator[Optional[Callable[[Any], None]]]:
    """A transient Rich progress bar for one video on stderr (on a terminal); yields the scan's callback.

    ``batch``: ``(number, total, PredictSummary)`` of a batch of videos: a line above the bar
    says which video of how many this is, and the batch's running counts (fake, real,
    borderline, no face, errors)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    if not stderr.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("frames  {task.fields[faces]} faces  {task.fields[fps]:.1f} frames/s"), TimeElapsedColumn(),
    )
    header = None
    if batch is not None:
        number, total, counts = batch
        header = f"video {number} of {total}" + (f"; so far {running_counts(counts)}" if counts.total else "")

    class _Progress(Progress):
        def get_renderables(self):  # the batch line, then the bar
            if header is not None:
                yield Text(header, overflow="ellipsis", no_wrap=True)
            yield from super().get_renderables()

    with _Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(escape(Path(path).name), total=None, faces=0, fps=0.0)
        yield lambda p: progress.update(task, total=p.sampled_total, completed=p.sampled_done, faces=p.faces, fps=p.fps)


def report_video(summary: dict[str, Any]) -> None:
    """One line per video on stderr."""
    name = escape(Path(summary["video"]).name)
    if summary["status"] == "error":
        stderr.print(f"[yellow]skipped:[/] {escape(summary['error'])}")
        return
    frames = summary["frames"]
    timings = summary["timings"]
    if summary["status"] == "no_face":
        verdict = "no face found"
    else:
        colour = "red" if summary["verdict"] == "fake" else "green"
        verdict = f"[{colour}]{summary['verdict']}[/] (p_fake {summary['p_fake']:.3f}, {summary['aggregate']}"
        verdict += f", borderline: margin {summary['margin']:+.3f})" if summary.get("borderline") else ")"
    stderr.print(
        f"{name}: {verdict}, {len(summary['tracks'])} track(s), {summary['face_count']} faces in "
        f"{frames['with_face']}/{frames['sampled']} sampled frames, {timings['total']:.1f} s"
        + (f", annotated: {escape(summary['annotated'])}" if summary["annotated"] else "")
    )


def register(app: typer.Typer) -> None:
    app.command("video", epilog=EXIT_CODES_HELP)(video)
