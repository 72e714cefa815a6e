"""``dfdetect predict``: score images (and, through the video scanner, videos)."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from deepfake_cli.cli.common import (
    EXIT_CODES_HELP,
    BorderlineBandOption,
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


def predict(
    sources: List[str] = typer.Argument(
        ..., help="Images or videos (an animated GIF counts as one), folders (recursive), globs, .txt lists of paths, or '-' to read paths from stdin."
    ),
    model: Optional[str] = ModelOption,
    config: Optional[Path] = ConfigOption,
    format_: Optional[str] = FormatOption,
    json_: bool = JsonOption,
    jsonl: bool = JsonlOption,
    csv_: bool = CsvOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write results to this file instead of stdout ('-': stdout; format from --format, else the extension)."),
    threshold: Optional[float] = ThresholdOption,
    borderline_band: Optional[float] = BorderlineBandOption,
    tta: Optional[str] = TtaOption,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Faces per inference batch."),
    device: Optional[str] = DeviceOption,
    no_detect: bool = NoDetectOption,
    margin: Optional[float] = MarginOption,
    min_face_prob: Optional[float] = MinFaceProbOption,
    min_face_size: Optional[int] = MinFaceSizeOption,
    largest_face: bool = LargestFaceOption,
    fail_on_fake: bool = typer.Option(False, "--fail-on-fake", help="Exit with code 3 when any input is judged fake."),
    threads: Optional[int] = ThreadsOption,
    ray: bool = RayOption,
    ray_address: Optional[str] = RayAddressOption,
    ray_actors: Optional[int] = RayActorsOption,
) -> None:
    """Score faces in images (and videos): one record per file, verdict = its most suspicious face.

    Output is a table on a terminal and JSON Lines in a pipe, or --format json|jsonl|csv
    (CSV: one row per face, with x1,y1,x2,y2 and the file's verdict on each row).
    A verdict whose p_fake is within --borderline-band of the threshold is borderline:
    'fake?'/'real?' in the table, borderline and a signed margin (p_fake - threshold)
    in JSON and CSV; it is still the verdict for the counts and exit codes.
    A file that cannot be read becomes an 'error' record and the batch goes on; an
    image without a face gets status 'no_face'. A video is scanned as by 'dfdetect
    video' (video.* config) and its record carries the video-level verdict.
    """
    from deepfake_cli.output import choose_format, format_from_extension

    with handle_errors():
        cfg = build_config(
            config,
            {
                "runtime.device": device,
                "runtime.num_threads": threads,
                "predict.threshold": threshold,
                "predict.borderline_band": borderline_band,
                "predict.tta": tta,
                "predict.batch_size": batch_size,
                **face_overrides(no_detect, margin, min_face_prob, min_face_size, largest_face),
                "model.name": model,
                **ray_overrides(ray, ray_address, ray_actors),
            },
        )
        fmt = choose_format(json_, jsonl, csv_, out=None if out is None else str(out), fmt=format_)
        named = None if out is None else format_from_extension(out)
        if named is not None and named != fmt:
            stderr.print(f"[yellow]note:[/] writing {fmt.upper()} into {escape(str(out))} (--{fmt} wins over the file's extension)")
        code = run_predict(cfg, sources, fmt, out, fail_on_fake)
    raise typer.Exit(code)


def run_predict(cfg, sources: list[str], fmt: str, out: Optional[Path], fail_on_fake: bool) -> int:
    from deepfake_cli.errors import NoInputsError
    from deepfake_cli.output import RecordWriter, check_not_an_input, finish_output, open_output_file
    from deepfake_cli.media.sources import expand_sources

    to_file = out is not None and str(out) != "-"
    # Only a file there already can be one of the inputs (the report appears at the end).
    out_exists = to_file and os.path.exists(out)
    # A bad --out fails before the model is loaded; '-' is stdout, as in 'dfdetect video'.
    stream = open_output_file(out) if to_file else sys.stdout
    complete = False
    records = None

    def checked(paths):
        for path in paths:
            if out_exists:
                check_not_an_input(out, path)  # before its report could replace it
            yield path

    try:
        # Sources expand lazily (a huge folder, stdin): look at the first before loading the model.
        found = checked(expand_sources(sources, on_no_match=note_no_match, on_note=note_source))
        first = next(found, None)
        if first is None:
            raise NoInputsError(f"no image or video files found in: {' '.join(sources)}")
        paths = itertools.chain([first], found)
        show_progress = stderr.is_terminal and not stderr.quiet and "-" not in sources
        if show_progress:
            # Counted for the progress bar (a folder walk costs little beside scoring its files).
            paths = list(paths)
        # torch and the models (about 2.5 s) only once there is something to score.
        from deepfake_cli.cli.video_cmd import scan_progress
        from deepfake_cli.inference.pipeline import FacePipeline
        from deepfake_cli.inference.predict import (
            IMAGE_COLUMNS, IMAGE_CSV_COLUMNS, PredictSummary, flat_image_row, image_csv_rows, table_image_row,
        )
        from deepfake_cli.inference.records import borderline_caption
        from deepfake_cli.inference.video import predict_paths

        if cfg.ray.enabled:  # the same records, computed by Ray actors (dfdetect[ray])
            from deepfake_cli.cluster.ray_pool import predict_records

            records = predict_records(paths, cfg, note=lambda text: stderr.print(f"[dim]{escape(text)}[/]"))
        else:
            classifier = load_classifier(cfg)
            pipeline = FacePipeline.from_config(classifier, cfg)
            records = None  # made below, once the progress bar is there
        summary = PredictSummary()
        with RecordWriter(fmt, IMAGE_COLUMNS, stream, flatten=flat_image_row, title="dfdetect predict",
                          csv_columns=IMAGE_CSV_COLUMNS, csv_rows=image_csv_rows, table_row=table_image_row) as writer, \
                batch_progress(len(paths) if show_progress else None) as bar:
            # Videos are scanned like 'dfdetect video' and give one record each.
            if records is None:
                records = predict_paths(paths, pipeline, cfg, video_progress=bar.video if bar else scan_progress)
            for record in records:
                writer.write(record)
                summary.add(record)
                if bar:
                    bar.advance(summary)
                if record["status"] == "error":
                    stderr.print(f"[yellow]skipped:[/] {escape(record['error'])}")
            if summary.borderline:
                writer.caption = borderline_caption(cfg.predict.borderline_band)
        complete = True
    finally:
        if records is not None:
            records.close()  # stops the work in flight (Ray: its actors, and a cluster it started)
        if to_file:
            # Stopped part-way (Ctrl-C, SIGTERM, an error): --out keeps what it held before.
            finish_output(stream, complete)
    if to_file:
        stderr.print(f"wrote {escape(str(out))}")
    stderr.print(batch_counts(summary, "input"))
    return batch_exit_code(summary, fail_on_fake)


class BatchProgress:
    """One Rich progress display on stderr for a batch: files done of the total, files/s and
    time left, a line for the video being scanned, if any, and a line of running counts
    (fake, real, borderline, no face, errors: a line of its own, so that the bar keeps its
    width at 80 columns)."""

    def __init__(self, progress, total: int):
        self.progress = progress
        self.started = time.monotonic()
        self.task = progress.add_task("scoring", total=total, rate="", counts="")

    def advance(self, summary) -> None:
        rate = summary.total / max(time.monotonic() - self.started, 1e-6)
        self.progress.counts = f"so far: {running_counts(summary)}"
        self.progress.update(self.task, completed=summary.total, rate=f"{rate:.1f} files/s")

    @contextlib.contextmanager
    def video(self, path: str):
        """Like ``video_cmd.scan_progress``, as a second line of this display (Rich shows one at a time)."""
        task = self.progress.add_task(escape(Path(path).name), total=None, rate="", counts="")
        try:
            yield lambda p: self.progress.update(
                task, total=p.sampled_total, completed=p.sampled_done,
                rate=f"{p.fps:.1f} frames/s", counts=f"{p.faces} faces",
            )
        finally:
            self.progress.remove_task(task)


@contextlib.contextmanager
def batch_progress(total: Optional[int]):
    """A transient :class:`BatchProgress` when ``total`` is known (stderr a terminal, not -q); else ``None``."""
    if total is None:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
    )

    class _Progress(Progress):
        counts = ""

        def get_renderables(self):  # the bars, then the counts
            yield from super().get_renderables()
            if self.counts:
                yield Text(self.counts, overflow="ellipsis", no_wrap=True)

    with _Progress(*columns, console=stderr, transient=True) as progress:
        yield BatchProgress(progress, total)


def register(app: typer.Typer) -> None:
    app.command("predict", epilog=EXIT_CODES_HELP)(predict)
