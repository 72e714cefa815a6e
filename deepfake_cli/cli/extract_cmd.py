"""``dfdetect extract``: videos -> face crops + metadata.csv, split by identity."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from deepfake_cli.cli.common import (
    default_of,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigOption,
    DeviceOption,
    RayActorsOption,
    RayAddressOption,
    RayOption,
    build_config,
    escape,
    handle_errors,
    prepare_runtime,
    ray_overrides,
    stderr,
)

EXTRACT_EXIT_HELP = (
    "Exit codes: 0 every video processed (videos without a usable face included); 1 fatal error "
    "(dataset not found, no videos, no crop at all); 2 usage error; 4 some videos could not be read "
    "(listed in errors.csv)."
)


def extract(
    root: Optional[Path] = typer.Argument(None, help="Dataset folder (default: data.root from the config).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (crops/, metadata.csv, dataset.json, errors.csv)."),
    layout: Optional[str] = typer.Option(None, "--layout", help=f"auto, ffpp (official FF++ download), kaggle, dfdc or real-fake (default: {default_of('data.layout')})."),
    methods: Optional[List[str]] = typer.Option(None, "--methods", help="Manipulation methods to keep, comma-separated or repeated (default: all)."),
    compression: Optional[str] = typer.Option(None, "--compression", help="FF++ compression level to read: raw, c23 or c40."),
    every: Optional[int] = typer.Option(None, "--every", help=f"Keep every Nth frame (default {default_of('data.sample_every')})."),
    frames_per_video: Optional[int] = typer.Option(None, "--frames-per-video", help="Keep K evenly spaced frames per video instead of --every."),
    all_faces: bool = typer.Option(False, "--all-faces", help="Keep every face of a frame, not only the largest."),
    size: Optional[int] = typer.Option(None, "--size", help=f"Resize crops to SIZE x SIZE pixels (default {default_of('face.crop_size')})."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Save crops at their original size."),
    margin: Optional[float] = typer.Option(None, "--margin", help=f"Margin added around the face box, as a fraction of its size (default {default_of('face.margin_default')})."),
    min_face_prob: Optional[float] = typer.Option(None, "--min-face-prob", help=f"Minimum face detection probability (default {default_of('face.min_prob')})."),
    min_face_size: Optional[int] = typer.Option(None, "--min-face-size", help=f"Minimum face size in pixels (default {default_of('face.min_size')})."),
    detect_max_side: Optional[int] = typer.Option(None, "--detect-max-side", help=f"Search faces as if frames were shrunk to this longer side: caps the cost, boxes stay full-frame MTCNN's (default {default_of('data.detect_max_side')}; 0: no cap)."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", help=f"JPEG quality of the crops (default {default_of('data.jpeg_quality')})."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help=f"Videos processed in parallel, one process each (default {default_of('data.extract_workers')})."),
    splits_dir: Optional[Path] = typer.Option(None, "--splits-dir", help="Folder with FF++'s official train.json/val.json/test.json."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help=f"Share of identity groups for validation (default {default_of('data.val_fraction')})."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help=f"Share of identity groups for test (default {default_of('data.test_fraction')})."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Seed of the identity split (default {default_of('data.split_seed')})."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete crops and manifests of an earlier extraction in --out first."),
    json_: bool = typer.Option(False, "--json", help="Write the run summary (and dataset counts) as JSON to stdout."),
    config: Optional[Path] = ConfigOption,
    device: Optional[str] = DeviceOption,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for detection (with --workers 1)."),
    ray: bool = RayOption,
    ray_address: Optional[str] = RayAddressOption,
    ray_actors: Optional[int] = RayActorsOption,
) -> None:
    """Turn a dataset of videos into face crops, split train/val/test by identity.

    Reads the official FaceForensics++ layout, the Kaggle FF++ layout, DFDC parts or
    real/ + fake/ folders. Frames are sampled (--every or --frames-per-video), faces found
    with MTCNN, and crops written to OUT/crops/<method>/<video_id>/ with one row each in
    OUT/metadata.csv. Re-running the same command resumes an interrupted run.
    """
    with handle_errors():
        from deepfake_cli.errors import UsageError

        if every is not None and frames_per_video is not None:
            raise UsageError("choose --every or --frames-per-video, not both")
        if no_resize and size is not None:
            raise UsageError("choose --size or --no-resize, not both")
        cfg = build_config(
            config,
            {
                "data.layout": layout,
                "data.methods": _split_list(methods),
                "data.compression": compression,
                "data.sample_every": every,
                "data.frames_per_video": frames_per_video,
                "data.jpeg_quality": jpeg_quality,
                "data.extract_workers": workers,
                "data.splits_dir": None if splits_dir is None else str(splits_dir),
                "data.val_fraction": val_fraction,
                "data.test_fraction": test_fraction,
                "data.split_seed": seed,
                "data.root": None if root is None else str(root),
                "data.all_faces": True if all_faces else None,
                "face.margin": margin,
                "face.min_prob": min_face_prob,
                "face.min_size": min_face_size,
                "data.detect_max_side": detect_max_side,
                "face.crop_size": size,
                "runtime.device": device,
                "runtime.num_threads": threads,
                **ray_overrides(ray, ray_address, ray_actors),
            },
        )
        if every is not None:
            cfg.data.frames_per_video = None  # --every beats frames_per_video from a config file
        if no_resize:
            cfg.face.crop_size = None
        code = run(cfg, out, overwrite, json_)
    raise typer.Exit(code)


def run(cfg, out: Path, overwrite: bool, json_: bool) -> int:
    from deepfake_cli.data.extract import run_extract
    from deepfake_cli.output import dumps

    device = prepare_runtime(cfg)
    with _ray_videos(cfg) as videos, _RichProgress() as progress:
        summary = run_extract(cfg, out, device=str(device), overwrite=overwrite, progress=progress, videos_runner=videos)
    table = dataset_table(summary.dataset)
    if json_:
        typer.echo(dumps(summary.to_dict(), indent=2))
        stderr.print(table)
    else:
        from rich.console import Console

        Console().print(table)
    rejected = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in summary.rejected.items())
    stderr.print(
        f"{summary.videos} videos ({summary.resumed} done earlier): {summary.crops} crops from "
        f"{summary.frames} frames, {summary.no_face} videos without a usable face, {summary.errors} errors; "
        f"faces rejected: {rejected}; written to {escape(str(out))}"
    )
    splits = summary.dataset["splits"]
    for split, fraction in (("val", splits["val_fraction"]), ("test", splits["test_fraction"])):
        if fraction and not splits["groups"].get(split) and splits["source"] == "seeded":
            total = sum(splits["groups"].values())
            stderr.print(f"[yellow]warning:[/] the {split} split is empty: {total} identity groups are too few for {fraction:.0%}")
    if summary.crops == 0:
        stderr.print("[bold red]error:[/] no face crop was extracted")
        return EXIT_FATAL
    return EXIT_PARTIAL if summary.errors else EXIT_OK


def _ray_videos(cfg):
    """With --ray, the videos go to Ray actors (dfdetect[ray]); else ``None``: the local workers."""
    import contextlib

    if not cfg.ray.enabled:
        return contextlib.nullcontext()
    from deepfake_cli.cluster.ray_pool import ExtractRunner

    return ExtractRunner(cfg, note=lambda text: stderr.print(f"[dim]{escape(text)}[/]"))


def dataset_table(dataset: dict):
    """The report's Table 1: crops (videos) per method and class in each split."""
    from rich.table import Table

    from deepfake_cli.data.extract import method_order
    from deepfake_cli.data.splits import SPLITS

    crops, videos = dataset["crops"]["by_split"], dataset["videos"]["by_split"]
    table = Table(title="dfdetect extract: crops (videos) per split")
    table.add_column("class")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("all", justify="right")

    def cell(getter) -> list[str]:
        values = [(getter(crops[s]), getter(videos[s])) for s in SPLITS]
        total = (sum(c for c, _ in values), sum(v for _, v in values))
        return [f"{c} ({v})" for c, v in values + [total]]

    for method in sorted(dataset["methods"], key=method_order):
        table.add_row(method, *cell(lambda d, m=method: d["methods"].get(m, 0)))
    table.add_section()
    table.add_row("real", *cell(lambda d: d["real"]))
    table.add_row("fake", *cell(lambda d: d["fake"]))
    table.add_row("total", *cell(lambda d: d["total"]), style="bold")
    return table


def _split_list(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


class _RichProgress:
    """Videos, frames, crops and rejected faces by reason, on stderr."""

    def __enter__(self) -> "_RichProgress":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("videos"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=stderr,
        )
        self._progress.__enter__()
        self._task = None
        self.frames = self.crops = self.errors = self.no_face = 0
        self.rejected: dict[str, int] = {}
        return self

    def start(self, total: int, resumed: int) -> None:
        self._task = self._progress.add_task("", total=total, completed=resumed)
        if resumed:
            stderr.print(f"[dim]resuming: {resumed} of {total} videos already done[/]")

    def video_done(self, result) -> None:
        self.frames += result.frames
        self.crops += result.crops
        for reason, n in result.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        if result.status == "error":
            self.errors += 1
            self._progress.console.print(f"[yellow]skipped:[/] {escape(result.reason or result.video)}")
        elif result.status == "no_face":
            self.no_face += 1
        rejected = sum(v for k, v in self.rejected.items() if k != "frames_without_face")
        self._progress.update(
            self._task,
            advance=1,
            description=f"{self.frames} frames, {self.crops} crops, {rejected} faces rejected, {self.errors} errors",
        )

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)


def register(app: typer.Typer) -> None:
    app.command("extract", epilog=EXTRACT_EXIT_HELP)(extract)
