"""``dfdetect train``: reproducible training of every registered architecture.

One :class:`Trainer` runs the whole recipe: data (:mod:`deepfake_cli.data.datasets`),
batch augmentation (:mod:`deepfake_cli.models.preprocessing`), class-weighted
cross-entropy, Adam/AdamW/SGD with optional warm-up + cosine or plateau
schedule, optional two-phase fine-tuning (head first, then the top of the
backbone at a lower learning rate), AMP and channels_last on CUDA,
DistributedDataParallel under ``torchrun``.

Each epoch is validated; ``best.pt`` is the epoch with the best validation
metric (the test split is never looked at) and carries the decision threshold
chosen on that validation split (``train.threshold_method``: at the EER by
default). ``last.pt`` adds the optimizer, scheduler, scaler, epoch and RNG
states as plain tensors and lists, so ``--resume`` continues exactly and
still loads with ``weights_only=True``. The run folder holds the resolved
config, ``metrics.jsonl`` (one line per epoch) and ``curves.png``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake_cli.models.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from deepfake_cli.config import Config, DataConfig, save_resolved_config
from deepfake_cli.data.datasets import AugmentedBatches, DatasetSplits, EpochBatchSampler, FaceCrops, as_roots, load_splits
from deepfake_cli.training.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    broadcast_object,
    distributed,
    gather_objects,
    process_device,
)
from deepfake_cli.errors import CheckpointError, DatasetError, UsageError
from deepfake_cli.output import atomic_write_text
from deepfake_cli.faces.framing import FaceFraming
from deepfake_cli.labels import real_index
from deepfake_cli.training.metrics import MIN_CALIBRATION_CROPS, binary_metrics, choose_threshold
from deepfake_cli.models import check_pretrained, create_model, get_model_spec
from deepfake_cli.provenance import file_sha256
from deepfake_cli.training.rundir import next_run_dir
from deepfake_cli.runtime import configure_threads, resolve_device, seed_everything
from deepfake_cli.models.preprocessing import build_eval_transform, build_train_transform, norm_tensors, normalize

HEAD_MODULES = ("fc", "classifier", "head")
# Options that may differ when a run is resumed; everything else comes from its last.pt.
RESUME_OVERRIDES = ("train.epochs", "runtime.device", "runtime.num_threads", "train.workers")
SELECT_HIGHER_IS_BETTER = {"auc": True, "auc_mean": True, "accuracy": True, "loss": False}


class TrainReporter:
    """Progress hooks; the CLI draws them with Rich, the library default is silent."""

    def message(self, text: str) -> None:
        pass

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, step: int, loss: float, accuracy: float, images_per_s: float) -> None:
        pass

    def epoch_end(self, record: Mapping[str, Any]) -> None:
        pass


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    best_epoch: int | None
    best_metric: float | None
    select_metric: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        final = self.history[-1] if self.history else {}
        return {
            "run_dir": str(self.run_dir),
            "best": str(self.best),
            "last": str(self.last),
            "best_epoch": self.best_epoch,
            "select_metric": self.select_metric,
            "best_metric": self.best_metric,
            "epochs": len(self.history),
            "final": final,
        }


def config_for_resume(last_pt: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """The configuration stored in ``last.pt``, with the few options a resume may change."""
    ckpt = load_checkpoint(last_pt)
    if "train_state" not in ckpt:
        raise CheckpointError(f"{last_pt}: holds no training state; resume from a run's last.pt")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    refused = sorted(k for k in given if k not in RESUME_OVERRIDES)
    if refused:
        raise UsageError(
            f"--resume continues the run with its stored configuration; only {', '.join(RESUME_OVERRIDES)} "
            f"may change (got {', '.join(refused)})"
        )
    cfg = Config.from_dict(ckpt["config"], source=str(last_pt)).replace(given)
    done = int(ckpt["train_state"]["epoch"])
    if cfg.train.epochs <= done:
        # Checked here, before the crops are decoded: there would be nothing to train.
        raise UsageError(f"{last_pt}: the run has trained through epoch {done} (--epochs {cfg.train.epochs}); pass --epochs above {done} to go on")
    return cfg


def train(cfg: Config, *, resume: str | Path | None = None, reporter: TrainReporter | None = None) -> TrainResult:
    """Train ``cfg.model.arch`` on ``cfg.data.root``; under torchrun, one process per rank."""
    if not as_roots(cfg.data.root):
        raise UsageError("no training data: pass --data (a metadata.csv from 'dfdetect extract' or an image folder)")
    configure_threads(cfg.runtime.num_threads)
    device = resolve_device(cfg.runtime.device)
    with distributed(device) as ctx:
        trainer = Trainer(cfg, process_device(device, ctx), ctx, reporter if ctx.is_main else None, resume)
        return trainer.fit()


class Trainer:
    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        ctx: DistContext,
        reporter: TrainReporter | None = None,
        resume: str | Path | None = None,
    ):
        self.cfg, self.device, self.ctx = cfg, device, ctx
        self.reporter = reporter or TrainReporter()
        tc = cfg.train
        if tc.select_metric not in SELECT_HIGHER_IS_BETTER:
            raise UsageError(f"select metric must be one of {', '.join(SELECT_HIGHER_IS_BETTER)}")
        self.spec = get_model_spec(cfg.model.arch)  # an unknown architecture fails before any data is read
        if cfg.model.pretrained and not cfg.model.init:
            check_pretrained(cfg.model.arch)  # and so does --pretrained where it means nothing
        resume_ckpt = load_checkpoint(resume) if resume else None
        if resume_ckpt is not None and "train_state" not in resume_ckpt:
            raise CheckpointError(f"{resume}: holds no training state; resume from a run's last.pt")
        seed_everything(cfg.runtime.seed)
        self._setup_data()
        self._setup_model(resume_ckpt)
        self._setup_crops()
        self._setup_optimisation()
        self._setup_state(resume, resume_ckpt)
        self._describe()

    # ------------------------------------------------------------------ construction, by section
    def _setup_data(self) -> None:
        """The splits, labels and face framing of the training data."""
        dc = self.cfg.data
        self.data: DatasetSplits = load_splits(
            dc.root, task=dc.task, val_fraction=dc.val_fraction, split_seed=dc.split_seed,
            group_lookalikes=dc.group_lookalikes, methods=dc.methods, compression=dc.compression, limit_per_class=dc.limit_per_class,
        )  # fmt: skip
        self.labels = self.data.labels
        self.num_classes = len(self.labels)
        self.real = real_index(self.labels)
        train_split, val_split = self.data["train"], self.data.get("val")
        if not len(train_split):
            raise DatasetError(f"{dc.root}: the training split is empty")
        self.train_split, self.val_split = train_split, val_split
        self.framing_probe: dict[str, Any] | None = None  # --margin auto's measurements
        self.framing = self._framing()

    def _setup_model(self, resume_ckpt: dict[str, Any] | None) -> None:
        """The model (fresh, ImageNet, --init or resumed weights), its preprocessing, AMP."""
        cfg, tc, device = self.cfg, self.cfg.train, self.device
        arch = cfg.model.arch
        # Weights to fine-tune (resumed weights replace them anyway).
        init_path, init_ckpt = self._init_checkpoint() if resume_ckpt is None else (None, None)
        self.preprocessing = self.spec.preprocessing(tc.input_size)
        if init_ckpt is not None:
            # The weights were learnt on inputs normalised this way.
            pre = init_ckpt["preprocessing"]
            self.preprocessing.update(mean=list(pre["mean"]), std=list(pre["std"]),
                                      input_size=int(tc.input_size or pre["input_size"]))
        self.input_size = int(self.preprocessing["input_size"])
        pretrained = cfg.model.pretrained and resume_ckpt is None and init_ckpt is None
        self.model = create_model(arch, num_classes=self.num_classes, pretrained=pretrained)
        self.init_provenance = None
        if init_ckpt is not None:
            self.init_provenance = self._load_init(init_path, init_ckpt)
        self.model = self.model.to(device)
        _check_input_size(self.model, arch, self.input_size, device)
        self.channels_last = tc.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean, self.std = norm_tensors(self.preprocessing, device)
        self.amp_dtype = None
        if tc.amp and device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif tc.cpu_amp and device.type == "cpu":
            self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _setup_crops(self) -> None:
        """Transforms, and the train/val crops decoded once into memory."""
        cfg, tc = self.cfg, self.cfg.train
        train_split, val_split = self.train_split, self.val_split
        self.train_tf = build_train_transform(self.preprocessing, tc.augment, tc.jpeg_augment, tc.rotation_augment,
                                              tc.downscale_augment, tc.blur_augment, tc.colour_augment)
        self.eval_tf = build_eval_transform(self.preprocessing)
        threads = cfg.runtime.num_threads or None
        with self.reporter.task(f"decoding {len(train_split)} train crops at {self.train_tf.cache_size}px", len(train_split)) as advance:
            self.train_crops = FaceCrops(train_split.paths, self.train_tf.cache_size, tc.cache_max_mb, threads, advance)
        self.val_crops = None
        if val_split is not None:
            with self.reporter.task(f"decoding {len(val_split)} val crops at {self.input_size}px", len(val_split)) as advance:
                self.val_crops = FaceCrops(val_split.paths, self.input_size, tc.cache_max_mb, threads, advance)

    def _setup_optimisation(self) -> None:
        """Sampler, optimiser, scheduler and the (class-weighted) loss."""
        cfg, tc, device, ctx = self.cfg, self.cfg.train, self.device, self.ctx
        train_split = self.train_split
        self.dataset_names = self.data.table.dataset_names
        strata, shares, self.stratum_dataset = self._dataset_shares()
        self.sampler = EpochBatchSampler(
            len(train_split), tc.batch_size, shuffle=True, seed=cfg.runtime.seed,
            rank=ctx.rank, world_size=ctx.world_size, max_steps=tc.max_steps_per_epoch,
            strata=strata, shares=shares,
        )  # fmt: skip
        self.steps_per_epoch = len(self.sampler)
        self.head_names, self.backbone_names = _split_head(self.model)
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        counts = self._drawn_class_counts(strata, shares)
        self.class_weights = _class_weights(counts) if tc.class_weighted else None
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, dtype=torch.float32, device=device)
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=tc.label_smoothing)
        self.trainable: frozenset[str] | None = None
        self.ddp_model: nn.Module = self.model

    def _setup_state(self, resume: str | Path | None, resume_ckpt: dict[str, Any] | None) -> None:
        """Epoch, history and best so far (restored when resuming), and the run folder."""
        cfg, tc, ctx = self.cfg, self.cfg.train, self.ctx
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if resume_ckpt is not None:
            self._restore(resume_ckpt)
            run_dir = Path(resume).resolve().parent
        else:
            run_dir = None
            if ctx.is_main:
                run_dir = next_run_dir(tc.out_dir, tc.name or "exp")
                if tc.name and run_dir.name != tc.name:
                    self.reporter.message(
                        f"[yellow]note:[/] {Path(tc.out_dir) / tc.name} exists (another run): this run writes to {run_dir}"
                    )
            run_dir = broadcast_object(run_dir, ctx)
        self.run_dir = Path(run_dir)
        self.best_path = self.run_dir / "best.pt"
        self.last_path = self.run_dir / "last.pt"
        if ctx.is_main:
            save_resolved_config(cfg, self.run_dir)

    # ------------------------------------------------------------------ setup helpers
    def _init_checkpoint(self) -> tuple[Path | None, dict[str, Any] | None]:
        spec = self.cfg.model.init
        if not spec:
            return None, None
        from deepfake_cli.models.store import resolve_model

        path = resolve_model(spec)
        ckpt = load_checkpoint(path)
        if ckpt["arch"] != self.cfg.model.arch:
            raise UsageError(f"--init {spec} holds a {ckpt['arch']} model, not {self.cfg.model.arch}: pass --arch {ckpt['arch']}")
        return path, ckpt

    def _load_init(self, path: Path, ckpt: Mapping[str, Any]) -> dict[str, Any]:
        """Copy the init checkpoint's weights; a head of another size (other labels) stays fresh."""
        own = self.model.state_dict()
        state = {k: v for k, v in ckpt["state_dict"].items() if k in own and own[k].shape == v.shape}
        fresh = sorted(k for k in own if k not in state)
        if list(ckpt["labels"]) != list(self.labels):
            # Other labels: a head of the same size would map them wrongly.
            head = {n.rsplit(".", 1)[0] + "." for n in _split_head(self.model)[0]}
            fresh = sorted(set(fresh) | {k for k in own if any(k.startswith(h) for h in head)})
            state = {k: v for k, v in state.items() if k not in fresh}
        self.model.load_state_dict(state, strict=False)
        if fresh:
            self.reporter.message(f"--init: {len(fresh)} tensors start fresh ({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''})")
        return {
            "path": str(path),
            "sha256": file_sha256(path),
            "labels": list(ckpt["labels"]),
            "fresh_tensors": fresh,
            "provenance": ckpt.get("provenance") or {},
        }

    def _dataset_shares(self) -> tuple[np.ndarray | None, list[float] | None, list[int]]:
        """Each train crop's stratum, the strata's shares of an epoch (None, None: drawn by
        size) and each stratum's dataset.

        A stratum is a dataset, or with ``balance_classes`` one class of one dataset: each
        dataset's draws are then split evenly over its classes, so a dataset's own real/fake
        ratio (the shared FF++ crops: two fakes per real) cannot teach the model "looks like
        this dataset, so fake"."""
        tc = self.cfg.train
        weights = tc.dataset_weights
        names = self.dataset_names
        if weights is not None:
            if len(weights) != len(names):
                raise UsageError(
                    f"--dataset-weights gives {len(weights)} weight(s) for {len(names)} dataset(s) ({', '.join(names)})"
                )
            if any(w < 0 for w in weights) or sum(weights) <= 0:
                raise UsageError("--dataset-weights must be >= 0 and not all 0")
        one_per_dataset = list(range(len(names)))
        if not weights and not tc.balance_classes:
            return None, None, one_per_dataset
        index = {n: k for k, n in enumerate(names)}
        datasets = self.train_split.frame["dataset"].map(index).to_numpy()
        shares = [float(w) for w in weights] if weights else np.bincount(datasets, minlength=len(names)).astype(float).tolist()
        if not tc.balance_classes:
            return datasets, shares, one_per_dataset
        k = self.num_classes
        targets = self.train_split.targets
        strata = datasets * k + targets
        present = np.bincount(strata, minlength=len(names) * k) > 0
        per_class = []
        for d, share in enumerate(shares):
            classes = present[d * k : (d + 1) * k]
            per_class += [float(share / classes.sum()) if has else 0.0 for has in classes]
        return strata, per_class, [s // k for s in range(len(names) * k)]

    def _drawn_class_counts(self, strata: np.ndarray | None, shares: list[float] | None) -> np.ndarray:
        """Class counts as an epoch draws them: class weights balance what the model sees."""
        split = self.train_split
        if strata is None:
            return split.class_counts(self.num_classes)
        counts = np.zeros(self.num_classes, dtype=np.float64)
        for k, draws in enumerate(self.sampler.draws):
            members = strata == k
            if members.any():
                own = np.bincount(split.targets[members], minlength=self.num_classes)
                counts += own * (draws / members.sum())
        return counts

    def _framing(self) -> FaceFraming:
        """dataset.json's framing for extracted data; the config's (--margin/--square) for image folders."""
        recorded = self.data.table.face
        fc = self.cfg.face
        if recorded is not None:
            framing = FaceFraming.from_dict(recorded)
            if (fc.margin is not None and fc.margin != framing.margin) or (fc.square is not None and fc.square != framing.square):
                self.reporter.message(
                    f"[yellow]note:[/] the crops were extracted with margin {framing.margin}, square {framing.square} "
                    "(dataset.json); that framing is recorded, not --margin/--square"
                )
            return framing
        if self.cfg.data.measure_framing:
            return self._measured_framing()
        defaults = FaceFraming()
        return FaceFraming(
            margin=defaults.margin if fc.margin is None else fc.margin,
            square=defaults.square if fc.square is None else fc.square,
        )

    def _measured_framing(self) -> FaceFraming:
        """``--margin auto``: the image folders' framing, measured with MTCNN on their train crops."""
        from deepfake_cli.data.framing_probe import probe_crop_framing

        train = self.data["train"].frame
        by_dataset = {name: rows["path"].tolist() for name, rows in train.groupby("dataset", sort=False)}
        self.reporter.message(f"measuring the crops' framing with MTCNN ({', '.join(by_dataset)}) ...")
        pooled, each = probe_crop_framing(by_dataset, seed=self.cfg.runtime.seed)
        for name, probe in each.items():
            self.reporter.message(f"  {name}: {probe.describe()}")
        self.framing_probe = {"pooled": pooled.to_dict(), **{name: p.to_dict() for name, p in each.items()}}
        self.reporter.message(f"recording the measured framing for inference: margin {pooled.margin}, square True")
        return FaceFraming(margin=pooled.margin, square=True)

    def _optimizer(self) -> torch.optim.Optimizer:
        tc = self.cfg.train
        params = dict(self.model.named_parameters())
        partial = tc.freeze_epochs > 0 or tc.unfreeze_fraction < 1.0
        backbone_lr = tc.lr * tc.finetune_lr_factor if partial else tc.lr
        groups = []
        for part, names, lr in (("head", self.head_names, tc.lr), ("backbone", self.backbone_names, backbone_lr)):
            for decay in (True, False):
                # No weight decay on biases and normalisation weights.
                members = [params[n] for n in names if (params[n].ndim > 1) == decay]
                if members:
                    wd = tc.weight_decay if decay else 0.0
                    groups.append({"params": members, "lr": lr, "weight_decay": wd, "name": f"{part}{'' if decay else '_no_decay'}"})
        if tc.optimizer == "adam":
            return torch.optim.Adam(groups, lr=tc.lr)
        if tc.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=tc.lr)
        return torch.optim.SGD(groups, lr=tc.lr, momentum=0.9, nesterov=True)

    def _scheduler(self):
        tc = self.cfg.train
        if tc.scheduler == "plateau":
            mode = "max" if SELECT_HIGHER_IS_BETTER[tc.select_metric] else "min"
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode=mode, factor=0.1, patience=2)
        total = max(1, tc.epochs * self.steps_per_epoch)
        warmup = int(round(tc.warmup_epochs * self.steps_per_epoch))
        cosine = tc.scheduler == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    @property
    def per_step_schedule(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR)

    def _set_trainable(self, epoch: int) -> None:
        """Head always; the top ``unfreeze_fraction`` of the backbone after ``freeze_epochs``."""
        tc = self.cfg.train
        backbone = self.backbone_names
        if epoch < tc.freeze_epochs:
            chosen: list[str] = []
        else:
            k = math.ceil(len(backbone) * tc.unfreeze_fraction)
            chosen = backbone[len(backbone) - k :]
        trainable = frozenset(self.head_names) | frozenset(chosen)
        if trainable == self.trainable:
            return
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        if self.trainable is not None:
            self.reporter.message(f"epoch {epoch + 1}: training {len(trainable)} of {len(self.head_names) + len(backbone)} parameter tensors")
        self.trainable = trainable
        self.ddp_model = self.model
        if self.ctx.enabled:
            # DDP syncs the parameters that require grad when it is built: rebuild after a change.
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)

    def _train_mode(self) -> None:
        self.ddp_model.train()
        for module in self.model.modules():
            # Frozen layers keep their running statistics.
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if not any(p.requires_grad for p in module.parameters(recurse=False)):
                    module.eval()

    def _describe(self) -> None:
        tr, va = self.train_split, self.val_split
        counts = ", ".join(f"{m} {n}" for m, n in tr.method_counts().items())
        if len(self.dataset_names) > 1:
            counts += "; " + ", ".join(f"{d} {n}" for d, n in tr.dataset_counts().items())
            if self.sampler.strata is not None:
                drawn = np.bincount(self.stratum_dataset, weights=self.sampler.draws, minlength=len(self.dataset_names))
                counts += " (drawn an epoch: " + ", ".join(f"{d} {int(n)}" for d, n in zip(self.dataset_names, drawn))
                counts += ", each split evenly over its classes)" if self.cfg.train.balance_classes else ")"
        elif self.cfg.train.balance_classes:
            # One dataset: its strata are its classes.
            drawn = ", ".join(f"{label} {int(n)}" for label, n in zip(self.labels, self.sampler.draws))
            counts += f" (drawn an epoch, split evenly over its classes: {drawn})"
        cache = "in memory" if self.train_crops.cached else "read per batch"
        carved = f" (carved out, seed {self.cfg.data.split_seed})" if self.data.table.carved_val else ""
        if self.data.table.lookalike_groups:
            carved += " by look-alike groups (" + ", ".join(f"{d} {n}" for d, n in self.data.table.lookalike_groups.items()) + ")"
        self.reporter.message(
            f"{self.cfg.model.arch} at {self.input_size}px, {self.num_classes} classes ({', '.join(self.labels)}); "
            f"train {len(tr)} crops ({counts}), val {len(va) if va is not None else 0}"
            f"{carved}; "
            f"crops {cache}; device {self.device}"
            f"{f', {self.ctx.world_size} processes' if self.ctx.enabled else ''}; "
            f"framing margin {self.framing.margin} square {self.framing.square}; run {self.run_dir}"
        )
        if self.init_provenance is not None:
            self.reporter.message(f"starting from the weights of {self.init_provenance['path']}")
        empty = [label for label, n in zip(self.labels, tr.class_counts(self.num_classes)) if n == 0]
        if empty:
            self.reporter.message(
                f"[yellow]note:[/] no training crops for {', '.join(empty)}: the model cannot learn "
                f"{'that class' if len(empty) == 1 else 'those classes'}, and its validation accuracy will say so"
            )
        if va is None:
            self.reporter.message("[yellow]note:[/] no validation split: best.pt is the last epoch and its threshold 0.5")
        else:
            real, fake = va.real_fake_counts()
            if min(real, fake) < MIN_CALIBRATION_CROPS:
                self.reporter.message(
                    f"[yellow]note:[/] the decision threshold will be chosen on {real} real and {fake} fake validation "
                    f"crops: a noisy choice below {MIN_CALIBRATION_CROPS} of each (recalibrate on more data with "
                    "'dfdetect evaluate --threshold-from val')"
                )
        if va is not None and not self.data.table.carved_val and self.cfg.data.val_fraction != DataConfig.val_fraction:
            self.reporter.message(
                f"[yellow]note:[/] --val-fraction {self.cfg.data.val_fraction} is not used: the data has its own val split"
            )
        if self.data.table.face is None and self.cfg.face.margin is None and not self.cfg.data.measure_framing:
            self.reporter.message(
                f"[yellow]note:[/] image folders do not say how their faces were cropped; recording margin "
                f"{self.framing.margin}, square {self.framing.square} for inference (set --margin/--square if they differ, or --margin auto to measure it)"
            )

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        tc = self.cfg.train
        loader = self._train_loader()
        for epoch in range(self.start_epoch, tc.epochs):
            self._set_trainable(epoch)
            self.sampler.set_epoch(epoch)
            self.reporter.epoch_start(epoch + 1, tc.epochs, self.steps_per_epoch)
            record = {"epoch": epoch + 1, **self._train_epoch(loader)}
            scores = self._validate()
            record.update(self._val_metrics(scores))
            value = record.get(_metric_key(tc.select_metric))
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and value is not None:
                self.scheduler.step(value)
            improved = self._improved(value)
            record["best"] = improved
            if improved:
                self.best_value, self.best_epoch = value, epoch + 1
            self.history.append(record)
            if self.ctx.is_main:
                self._save(record, scores, improved)
            self.reporter.epoch_end(record)
        barrier(self.ctx)  # rank 0 may still be writing the last checkpoint
        return TrainResult(
            run_dir=self.run_dir,
            best=self.best_path,
            last=self.last_path,
            best_epoch=self.best_epoch,
            best_metric=self.best_value,
            select_metric=tc.select_metric,
            history=self.history,
        )

    def _train_loader(self) -> torch.utils.data.DataLoader:
        workers = self.cfg.train.workers
        dataset = AugmentedBatches(self.train_crops, self.train_split.targets, self.train_tf, self.cfg.runtime.seed, self.ctx.rank)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
            # Its own generator: creating iterators must not draw from the global RNG (exact resume).
            generator=torch.Generator(),
        )

    def _to_input(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return normalize(images, self.mean, self.std)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def _train_epoch(self, loader) -> dict[str, Any]:
        self._train_mode()
        sync_every = 1 if self.device.type == "cpu" else 25
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, ce, correct, n
        started = time.perf_counter()
        seen = 0
        for step, (images, targets) in enumerate(loader):
            x = self._to_input(images)
            y = targets.to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.ddp_model(x)
            logits = logits.float()
            loss = self.criterion(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.per_step_schedule:
                self.scheduler.step()
            with torch.no_grad():
                n = y.shape[0]
                ce = F.cross_entropy(logits, y)
                correct = (logits.argmax(1) == y).sum()
                totals += torch.stack([loss.detach() * n, ce * n, correct.float(), logits.new_tensor(float(n))]).double()
            seen += n
            if (step + 1) % sync_every == 0 or step + 1 == self.steps_per_epoch:
                t = totals.tolist()
                self.reporter.step(step + 1, t[0] / max(t[3], 1), t[2] / max(t[3], 1), seen / (time.perf_counter() - started))
        seconds = time.perf_counter() - started
        loss_sum, ce_sum, correct, n = all_reduce_sum(totals.tolist(), self.ctx)
        return {
            "lr": max(g["lr"] for g in self.optimizer.param_groups),
            "train_loss": loss_sum / max(n, 1),
            "train_ce": ce_sum / max(n, 1),
            "train_acc": correct / max(n, 1),
            "train_images": int(n),
            "train_seconds": round(seconds, 2),
            "images_per_s": round(n / seconds, 1) if seconds > 0 else None,
        }

    @torch.inference_mode()
    def _validate(self) -> dict[str, np.ndarray] | None:
        """Softmax scores of this rank's share of the val crops, gathered in order."""
        if self.val_crops is None:
            return None
        self.model.eval()
        n = len(self.val_crops)
        mine = list(range(self.ctx.rank, n, self.ctx.world_size))
        batch = self.cfg.train.batch_size * 2
        keys = [(0, i, mine[i : i + batch]) for i in range(0, len(mine), batch)]
        workers = 0 if self.val_crops.cached else self.cfg.train.workers
        loader = torch.utils.data.DataLoader(
            AugmentedBatches(self.val_crops, self.val_split.targets, self.eval_tf),
            batch_size=None, sampler=keys, num_workers=workers, generator=torch.Generator(),
        )  # fmt: skip
        probs, losses = [], []
        for images, targets in loader:
            with self._autocast():
                logits = self.model(self._to_input(images)).float()
            probs.append(torch.softmax(logits, 1).cpu().numpy())
            losses.append(F.cross_entropy(logits, targets.to(self.device), reduction="none").cpu().numpy())
        local = (
            np.array(mine, dtype=np.int64),
            np.concatenate(probs) if probs else np.zeros((0, self.num_classes), np.float32),
            np.concatenate(losses) if losses else np.zeros(0, np.float32),
        )
        order, all_probs, all_losses = (np.concatenate(parts) for parts in zip(*gather_objects(local, self.ctx)))
        inverse = np.argsort(order)
        return {"probs": all_probs[inverse], "loss": all_losses[inverse], "targets": self.val_split.targets}

    def _val_metrics(self, scores: dict[str, np.ndarray] | None) -> dict[str, Any]:
        if scores is None:
            return {"val_loss": None, "val_acc": None, "val_auc": None}
        probs, targets = scores["probs"], scores["targets"]
        y_fake = (targets != self.real).astype(np.int64)
        p_fake = 1.0 - probs[:, self.real]
        binary = binary_metrics(y_fake, p_fake, 0.5)
        record = {
            "val_loss": float(scores["loss"].mean()),
            "val_acc": float((probs.argmax(1) == targets).mean()),
            "val_auc": binary["auc"],
            "val_ap": binary["average_precision"],
            "val_eer": binary["eer"],
        }
        if len(self.dataset_names) > 1:
            per = {}
            datasets = self.val_split.frame["dataset"].to_numpy()
            for name in self.dataset_names:
                mine = datasets == name
                if not mine.any():
                    continue
                m = binary_metrics(y_fake[mine], p_fake[mine], 0.5)
                per[name] = {
                    "crops": int(mine.sum()),
                    "loss": float(scores["loss"][mine].mean()),
                    "acc": float((probs[mine].argmax(1) == targets[mine]).mean()),
                    "auc": m["auc"],
                    "ap": m["average_precision"],
                    "eer": m["eer"],
                }
            record["val_datasets"] = per
            aucs = [v["auc"] for v in per.values() if v["auc"] is not None]
            record["val_auc_mean"] = float(np.mean(aucs)) if len(aucs) == len(per) and aucs else None
        else:
            record["val_auc_mean"] = binary["auc"]
        return record

    def _improved(self, value: float | None) -> bool:
        if self.val_crops is None:
            return True  # no validation: the latest epoch is the best we know
        if self.best_epoch is None:
            return True
        if value is None:
            return False
        if self.best_value is None:
            return True
        higher = SELECT_HIGHER_IS_BETTER[self.cfg.train.select_metric]
        return value > self.best_value if higher else value < self.best_value

    # ------------------------------------------------------------------ saving
    def _threshold(self, scores: dict[str, np.ndarray] | None) -> tuple[float, dict[str, Any]]:
        method = self.cfg.train.threshold_method
        if scores is None:
            return 0.5, {"threshold_method": "fixed", "threshold_split": None}
        y_fake = (scores["targets"] != self.real).astype(np.int64)
        p_fake = 1.0 - scores["probs"][:, self.real]
        threshold = choose_threshold(y_fake, p_fake, method)
        at = binary_metrics(y_fake, p_fake, threshold)
        info = {
            "threshold_method": method,
            "threshold_split": "val",
            "val_accuracy_at_threshold": at["accuracy"],
            "val_balanced_accuracy_at_threshold": at["balanced_accuracy"],
        }
        if len(self.dataset_names) > 1:
            datasets = self.val_split.frame["dataset"].to_numpy()
            info["val_datasets_at_threshold"] = {
                name: {k: m[k] for k in ("accuracy", "balanced_accuracy", "recall", "specificity")}
                for name in self.dataset_names
                if (datasets == name).any()
                for m in [binary_metrics(y_fake[datasets == name], p_fake[datasets == name], threshold)]
            }
        return threshold, info

    def _checkpoint(self, record: Mapping[str, Any], scores, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        threshold, info = self._threshold(scores)
        metrics = {**record, "select_metric": self.cfg.train.select_metric, "threshold": threshold, **info}
        provenance = {
            **self.data.provenance(),
            "arch": self.cfg.model.arch,
            "pretrained": self.cfg.model.pretrained and self.init_provenance is None,
            "init": self.init_provenance,
            "seed": self.cfg.runtime.seed,
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "started": self.started,
            "torch": str(torch.__version__),
            "augment": self.train_tf.describe(),
            "class_weights": self.class_weights,
        }
        return build_checkpoint(
            self.model,
            arch=self.cfg.model.arch,
            model_args={"num_classes": self.num_classes},
            labels=self.labels,
            preprocessing=self.preprocessing,
            face={**self.framing.to_dict(), **({"measured": self.framing_probe} if self.framing_probe else {})},
            threshold=threshold,
            config=self.cfg.to_dict(),
            metrics=metrics,
            provenance=provenance,
            # evaluate knows these crops by content wherever they are copied (never scores them as unseen).
            extra={"train_crop_digests": torch.from_numpy(self.data.train_digests), **dict(extra or {})},
        )

    def _save(self, record: Mapping[str, Any], scores, improved: bool) -> None:
        from deepfake_cli.training.plots import plot_training_curves

        if improved:
            save_checkpoint(self._checkpoint(record, scores), self.best_path)
        state = {
            "epoch": record["epoch"],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }
        save_checkpoint(self._checkpoint(record, scores, extra={"train_state": state}), self.last_path)
        lines = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write_text(self.run_dir / "metrics.jsonl", lines)
        plot_training_curves(self.history, self.run_dir / "curves.png")

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        state = ckpt["train_state"]
        self.model.load_state_dict(ckpt["state_dict"])
        self._set_trainable(int(state["epoch"]))  # the parameter set the optimizer state refers to
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        set_rng_state(state["rng"])
        self.reporter.message(f"resuming after epoch {self.start_epoch} of {self.cfg.train.epochs}")


def _metric_key(select: str) -> str:
    return {"auc": "val_auc", "auc_mean": "val_auc_mean", "accuracy": "val_acc", "loss": "val_loss"}[select]


def _check_input_size(model: nn.Module, arch: str, size: int, device: torch.device) -> None:
    """One forward pass on a blank crop: a size the architecture cannot take fails here, clearly."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{arch} cannot take {size}px inputs (--input-size): {first}") from exc


def _class_weights(counts: np.ndarray) -> list[float]:
    """w_c = N / (K * N_c) over the K classes present (absent classes: 1)."""
    present = counts > 0
    total, k = counts.sum(), int(present.sum())
    return [float(total / (k * c)) if c > 0 else 1.0 for c in counts]


def _split_head(model: nn.Module) -> tuple[list[str], list[str]]:
    """Parameter names of the classification head and of the backbone (in model order)."""
    for attr in HEAD_MODULES:
        if isinstance(getattr(model, attr, None), nn.Module):
            prefix = attr + "."
            names = [n for n, _ in model.named_parameters()]
            head = [n for n in names if n.startswith(prefix)]
            return head, [n for n in names if not n.startswith(prefix)]
    raise UsageError(f"{type(model).__name__}: no head module ({', '.join(HEAD_MODULES)}) to train apart from the backbone")


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, lists and numbers (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "name": np_state[0],
            "keys": np_state[1].tolist(),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
