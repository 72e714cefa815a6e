"""``dfdetect train``: train a registered architecture on extracted or image-folder face crops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

import typer

from deepfake_cli.cli.common import ConfigOption, DeviceOption, build_config, default_of, handle_errors, progress_task, stderr

TRAIN_EPILOG = (
    "Multi-GPU / multi-node: torchrun --nproc_per_node N -m deepfake_cli train ... "
    "(gloo on CPU, NCCL on CUDA; rank 0 logs and saves). "
    "Exit codes: 0 trained; 1 fatal error (data or checkpoint unusable); 2 usage error."
)


def parse_margin(value: str) -> float:
    """``--margin``: a number, or ``auto`` (handled by the caller)."""
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"expected a number or 'auto', got {value!r}", param_hint="'--margin'") from None


def train(
    data: Optional[list[str]] = typer.Option(None, "--data", "-d", help="metadata.csv from 'dfdetect extract' (or its folder), or an image folder <root>/<split?>/<class>/; repeat for several datasets (each split on its own, reported apart)."),
    dataset_weights: Optional[str] = typer.Option(None, "--dataset-weights", help="Comma-separated share of each --data in an epoch's draws (default: by size)."),
    balance_classes: Optional[bool] = typer.Option(None, "--balance-classes/--no-balance-classes", help="Split each dataset's draws evenly over its classes, so no dataset's real/fake ratio is a cue (default off)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Architecture (see 'dfdetect models list'); default resnet18."),
    task: Optional[str] = typer.Option(None, "--task", help="binary (real vs fake) or multiclass (original + each method)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help=f"Epochs (default {default_of('train.epochs')})."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help=f"Batch size per process (default {default_of('train.batch_size')})."),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Learning rate (default {default_of('train.lr')})."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help=f"Weight decay (default {default_of('train.weight_decay')}; none on biases and norms)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help=f"adam, adamw or sgd (default {default_of('train.optimizer')})."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="none, cosine (per step) or plateau (on the validation metric)."),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", help="Linear learning-rate warm-up, in epochs."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help=f"Label smoothing of the cross-entropy (default {default_of('train.label_smoothing')})."),
    class_weights: Optional[bool] = typer.Option(None, "--class-weights/--no-class-weights", help=f"Weight classes by N / (K * N_c) (default {default_of('train.class_weighted')})."),
    select_metric: Optional[str] = typer.Option(None, "--select-metric", help="Validation metric that picks best.pt: auc, auc_mean (mean of the datasets' AUCs), accuracy or loss."),
    threshold_method: Optional[str] = typer.Option(None, "--threshold-method", help="best.pt's threshold on the validation split: eer, youden or fixed (0.5)."),
    freeze_epochs: Optional[int] = typer.Option(None, "--freeze-epochs", help="Train only the head for this many epochs first."),
    unfreeze_fraction: Optional[float] = typer.Option(None, "--unfreeze-fraction", help="Top fraction of the backbone trained after the frozen epochs."),
    finetune_lr_factor: Optional[float] = typer.Option(None, "--finetune-lr-factor", help=f"Backbone lr = lr x this when fine-tuning in two phases (default {default_of('train.finetune_lr_factor')})."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained", help="Start from ImageNet weights (torchvision; offline from TORCH_HOME)."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this checkpoint's weights (path or model name, e.g. from 'dfdetect models import'): fine-tuning."),
    augment: Optional[str] = typer.Option(None, "--augment", help="none, basic (the report's recipe) or strong (for training from scratch)."),
    jpeg_augment: Optional[bool] = typer.Option(None, "--jpeg-augment/--no-jpeg-augment", help="Random JPEG re-compression (on in --augment strong)."),
    downscale_augment: Optional[bool] = typer.Option(
        None, "--downscale-augment/--no-downscale-augment",
        help="Random loss of resolution: 30% of crops shrunk to 35-90% of their side and enlarged back.",
    ),
    blur_augment: Optional[bool] = typer.Option(
        None, "--blur-augment/--no-blur-augment", help="Random Gaussian blur: 40% of crops, sigma 0.2-1.2 px.",
    ),
    colour_augment: Optional[bool] = typer.Option(
        None, "--colour-augment/--no-colour-augment", help="Random colour shifts: saturation ±25%, 5% of crops in grey.",
    ),
    rotation: Optional[float] = typer.Option(None, "--rotation", help="Random rotation of up to this many degrees."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Train (and later predict) at this size instead of the architecture's."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of train carved out for validation when the data has no val split."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="Seed of that carve-out."),
    group_lookalikes: Optional[bool] = typer.Option(
        None, "--group-lookalikes/--no-group-lookalikes",
        help="Carve val by look-alike groups: image-folder crops of one person in one setting stay on one side (default on).",
    ),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated fake methods to keep (reals always kept)."),
    limit_per_class: Optional[int] = typer.Option(None, "--limit-per-class", help="Balanced subset: at most N crops per class in train (others in proportion)."),
    margin: Optional[str] = typer.Option(None, "--margin", metavar="FLOAT|auto", help="Face margin of image-folder crops, recorded for inference (extracted data: from dataset.json); auto: measure it with MTCNN on a sample of the crops."),
    square: Optional[bool] = typer.Option(None, "--square/--no-square", help="Whether image-folder crops are square boxes."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of weights, order and augmentation."),
    device: Optional[str] = DeviceOption,
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help=f"DataLoader worker processes (default {default_of('train.workers')})."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for computation."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help=f"Mixed precision on CUDA (default {default_of('train.amp')})."),
    cpu_amp: Optional[bool] = typer.Option(None, "--cpu-amp/--no-cpu-amp", help="bf16 autocast on CPU: ~3x faster for resnet18/cnn_small on AMX CPUs, slower for sepcnn."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=f"channels_last memory format (default {default_of('train.channels_last')})."),
    max_steps_per_epoch: Optional[int] = typer.Option(None, "--max-steps-per-epoch", help="Cut epochs short (quick runs)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Run name under --project (default exp, then exp2, ...)."),
    project: Optional[str] = typer.Option(None, "--project", help=f"Folder of runs (default {default_of('train.out_dir')})."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a run from its last.pt (same configuration; --epochs may grow)."),
    config: Optional[Path] = ConfigOption,
    json_: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Train a detector; best.pt is chosen on the validation split, never on test.

    Writes runs/train/<name>/: config.json, metrics.jsonl, curves.png, best.pt, last.pt.
    """
    overrides: dict[str, Any] = {
        "data.root": (data[0] if len(data) == 1 else list(data)) if data else None,
        "data.task": task,
        "data.val_fraction": val_fraction,
        "data.split_seed": split_seed,
        "data.group_lookalikes": group_lookalikes,
        "data.methods": methods,
        "data.limit_per_class": limit_per_class,
        "model.arch": arch,
        "model.pretrained": pretrained,
        "model.init": init,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "train.weight_decay": weight_decay,
        "train.optimizer": optimizer,
        "train.scheduler": scheduler,
        "train.warmup_epochs": warmup_epochs,
        "train.label_smoothing": label_smoothing,
        "train.class_weighted": class_weights,
        "train.select_metric": select_metric,
        "train.threshold_method": threshold_method,
        "train.freeze_epochs": freeze_epochs,
        "train.unfreeze_fraction": unfreeze_fraction,
        "train.finetune_lr_factor": finetune_lr_factor,
        "train.augment": augment,
        "train.jpeg_augment": jpeg_augment,
        "train.downscale_augment": downscale_augment,
        "train.blur_augment": blur_augment,
        "train.colour_augment": colour_augment,
        "train.rotation_augment": rotation,
        "train.input_size": input_size,
        "train.workers": workers,
        "train.amp": amp,
        "train.channels_last": channels_last,
        "train.cpu_amp": cpu_amp,
        "train.max_steps_per_epoch": max_steps_per_epoch,
        "train.dataset_weights": dataset_weights,
        "train.balance_classes": balance_classes,
        "train.name": name,
        "train.out_dir": project,
        "face.margin": None if margin is None or margin == "auto" else parse_margin(margin),
        "data.measure_framing": True if margin == "auto" else None,
        "face.square": square,
        "runtime.seed": seed,
        "runtime.device": device,
        "runtime.num_threads": threads,
    }
    from deepfake_cli.output import dumps
    from deepfake_cli.training.train import config_for_resume, train as run_training

    main = int(os.environ.get("RANK", "0")) == 0
    with handle_errors():
        if resume is not None:
            if config is not None:
                from deepfake_cli.errors import UsageError

                raise UsageError("--resume takes its configuration from last.pt; drop --config")
            cfg = config_for_resume(resume, overrides)
        else:
            cfg = build_config(config, overrides)
        result = run_training(cfg, resume=resume, reporter=RichTrainReporter() if main else None)
    if not main:
        return
    summary = result.to_dict()
    if json_:
        typer.echo(dumps(summary, indent=2))
        return
    metric = summary["best_metric"]
    typer.echo(f"run       {summary['run_dir']}")
    typer.echo(f"best.pt   {summary['best']} (epoch {summary['best_epoch']}, val {summary['select_metric']} "
               f"{'n/a' if metric is None else f'{metric:.4f}'})")  # fmt: skip
    typer.echo(f"last.pt   {summary['last']}")


class RichTrainReporter:
    """Progress bars with loss, accuracy and throughput on stderr; one line per epoch."""

    def __init__(self) -> None:
        self._progress = None
        self._task = None

    def message(self, text: str) -> None:
        stderr.print(f"[dim]{text}[/]", soft_wrap=True)

    task = staticmethod(progress_task)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} {task.fields[ips]:.1f} img/s"),
            TimeElapsedColumn(), console=stderr, transient=True, disable=not stderr.is_terminal,
        )  # fmt: skip
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, loss=0.0, acc=0.0, ips=0.0)

    def step(self, step: int, loss: float, accuracy: float, images_per_s: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=loss, acc=accuracy, ips=images_per_s)

    def epoch_end(self, record: Mapping[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

        def fmt(key: str, digits: int = 4) -> str:
            value = record.get(key)
            return "n/a" if value is None else f"{value:.{digits}f}"

        stderr.print(
            f"epoch {record['epoch']}: train loss {fmt('train_loss')} acc {fmt('train_acc', 3)} | "
            f"val loss {fmt('val_loss')} acc {fmt('val_acc', 3)} auc {fmt('val_auc')} eer {fmt('val_eer', 3)} | "
            f"lr {record['lr']:.2e}, {record.get('images_per_s') or 0:.1f} img/s, {record['train_seconds']:.0f}s"
            f"{'  [green]best[/]' if record.get('best') else ''}",
            soft_wrap=True,
        )
        for name, m in (record.get("val_datasets") or {}).items():
            auc = "n/a" if m.get("auc") is None else f"{m['auc']:.4f}"
            stderr.print(f"  val {name}: auc {auc} acc {m['acc']:.3f} loss {m['loss']:.4f} ({m['crops']} crops)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("train", epilog=TRAIN_EPILOG)(train)
