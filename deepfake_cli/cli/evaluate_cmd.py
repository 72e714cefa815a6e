"""``dfdetect evaluate``: the full report of a checkpoint on labelled face crops."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from deepfake_cli.cli.common import (
    ConfigOption,
    DeviceOption,
    ModelOption,
    TtaOption,
    build_config,
    escape,
    handle_errors,
    prepare_runtime,
    progress_task,
    stderr,
)

EVALUATE_EPILOG = (
    "Writes report.json, report.md, predictions.csv, confusion.csv/.png, roc.png (and videos.csv, "
    "confusion_multiclass.csv/.png) to --out (default runs/evaluate/exp, exp2, ...). "
    "Exit codes: 0 evaluated; 1 fatal error (model or data unusable); 2 usage error."
)


def evaluate(
    model: Optional[str] = ModelOption,
    data: Optional[list[str]] = typer.Option(None, "--data", "-d", help="metadata.csv from 'dfdetect extract' (or its folder), or an image folder <root>/<split?>/<class>/; repeat for several datasets (reported apart and together)."),
    split: str = typer.Option("auto", "--split", help="auto (test, else the model's own val split, else all), all, train, val or test."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default runs/evaluate/exp, auto-numbered)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Decision threshold on p_fake (default: the checkpoint's)."),
    threshold_from: str = typer.Option("checkpoint", "--threshold-from", help="checkpoint, or val: choose it on the validation split and write it into the checkpoint."),
    threshold_method: Optional[str] = typer.Option(None, "--threshold-method", help="With --threshold-from val: eer, youden or fixed (default: the training run's)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated fake methods to keep (reals always kept)."),
    limit_per_class: Optional[int] = typer.Option(None, "--limit-per-class", help="Balanced subset of at most N crops per class (quick checks)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Validation carve-out of data without a val split (default: the training run's)."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="Seed of that carve-out."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Crops per inference batch."),
    tta: Optional[str] = TtaOption,
    device: Optional[str] = DeviceOption,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads."),
    config: Optional[Path] = ConfigOption,
    json_: bool = typer.Option(False, "--json", help="Print report.json to stdout."),
) -> None:
    """Evaluate a checkpoint on labelled face crops: the full report, never on training crops.

    Accuracy, per-class precision/recall/F1 (macro and weighted), confusion matrix, ROC-AUC, average
    precision, EER, Youden threshold, loss, per-method AUC, video-level AUC, multiclass confusion.
    """
    from deepfake_cli.errors import UsageError
    from deepfake_cli.output import dumps

    with handle_errors():
        cfg = build_config(
            config,
            {
                "data.root": (data[0] if len(data) == 1 else list(data)) if data else None,
                "data.methods": methods,
                "data.limit_per_class": limit_per_class,
                "data.val_fraction": val_fraction,
                "data.split_seed": split_seed,
                "predict.batch_size": batch_size,
                "predict.tta": tta,
                "runtime.device": device,
                "runtime.num_threads": threads,
                "model.name": model,
            },
        )
        if not cfg.data.root:
            raise UsageError("no data to evaluate on: pass --data (a metadata.csv or an image folder)")
        from deepfake_cli.training.evaluate import evaluate as run_evaluation, summary_line
        from deepfake_cli.models.store import resolve_model
        from deepfake_cli.training.rundir import next_run_dir

        torch_device = prepare_runtime(cfg)
        checkpoint = resolve_model(cfg.model.name)
        out_dir = out if out is not None else next_run_dir("runs/evaluate", "exp")
        try:
            report = run_evaluation(
                checkpoint, cfg, cfg.data.root, out_dir, device=torch_device, split=split, threshold=threshold,
                threshold_from=threshold_from, threshold_method=threshold_method,
                task_hook=progress_task, message=lambda text: stderr.print(f"[dim]{text}[/]", soft_wrap=True),
            )  # fmt: skip
        except BaseException:
            if out is None:  # a numbered folder this run made and left empty: not the next report's number
                with contextlib.suppress(OSError):
                    Path(out_dir).rmdir()
            raise
        stderr.print(summary_line(report), soft_wrap=True)
        stderr.print(f"report: {escape(str(Path(out_dir) / 'report.md'))}")
    if json_:
        typer.echo(dumps(report, indent=2))
    else:
        typer.echo(str(Path(out_dir) / "report.json"))


def register(app: typer.Typer) -> None:
    app.command("evaluate", epilog=EVALUATE_EPILOG)(evaluate)
