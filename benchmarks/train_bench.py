"""Training images/s of ``dfdetect train`` against the first report's plain loop.

Reference, written the way the first report's script trains: an image-folder
dataset read with PIL and torchvision transforms in the main process
(``Resize(256)``, ``RandomResizedCrop(224, scale=(0.8, 1))``, horizontal flip,
``ColorJitter(0.1, 0.1)``, ``ToTensor``, ``Normalize``; sizes scaled with the
input size), a model in the default NCHW layout, Adam, class-weighted
cross-entropy.

dfdetect: ``deepfake_cli.training.train.train`` with the same architecture, input size,
batch size, optimizer, loss and augmentation recipe (``--augment basic``):
crops decoded once into a uint8 tensor, batch augmentation in DataLoader
workers overlapping the training step, channels_last; then the same with
``--cpu-amp`` (bf16 autocast, which uses AMX on CPUs that have it).

Both run in this one process on the same crops of
``../shared/data/ffpp_faces/train``, with the same thread count; images/s are
timed after ``--warmup`` steps over ``--steps`` steps. dfdetect's one-time
decoding of the crops (once per run, not per epoch) is printed apart.
Target: ratio >= 1.5 on 2 cores.

    python benchmarks/train_bench.py                       # resnet18 and cnn_small at 224 px
    python benchmarks/train_bench.py --archs sepcnn --input-size 128 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared")) / "data" / "ffpp_faces" / "train"


def reference_loop(arch: str, paths: list[str], targets: list[int], input_size: int, batch: int, warmup: int, steps: int, lr: float) -> float:
    """images/s of the plain loop: PIL + torchvision transforms per image in the main process, NCHW."""
    from PIL import Image
    from torchvision import transforms as T

    from deepfake_cli.models import create_model, get_model_spec

    spec = get_model_spec(arch)
    resize = int(round(input_size * 256 / 224))
    transform = T.Compose([
        T.Resize((resize, resize)),
        T.RandomResizedCrop(input_size, scale=(0.8, 1.0)),
        T.RandomHorizontalFlip(),
        T.ColorJitter(brightness=0.1, contrast=0.1),
        T.ToTensor(),
        T.Normalize(spec.mean, spec.std),
    ])  # fmt: skip
    torch.manual_seed(0)
    model = create_model(arch, num_classes=2)
    model.train()
    counts = torch.bincount(torch.tensor(targets), minlength=2).float()
    criterion = torch.nn.CrossEntropyLoss(weight=counts.sum() / (2 * counts))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    order = torch.randperm(len(paths)).tolist()
    stamps = []
    for step in range(warmup + steps):
        idx = order[step * batch : (step + 1) * batch]
        x = torch.stack([transform(Image.open(paths[i]).convert("RGB")) for i in idx])
        y = torch.tensor([targets[i] for i in idx])
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return steps * batch / (stamps[-1] - stamps[warmup - 1])


class _Timer:
    """A TrainReporter that keeps the time of every step and of the crop decoding."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.decode_s = 0.0

    def message(self, text: str) -> None:
        pass

    @contextlib.contextmanager
    def task(self, description: str, total: int):
        started = time.perf_counter()
        yield lambda n: None
        self.decode_s += time.perf_counter() - started

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, step: int, loss: float, accuracy: float, images_per_s: float) -> None:
        self.stamps.append(time.perf_counter())

    def epoch_end(self, record) -> None:
        pass


def dfdetect_loop(arch: str, data: Path, limit: int, input_size: int, batch: int, warmup: int, steps: int, lr: float, workers: int, threads: int, cpu_amp: bool) -> tuple[float, float]:
    """(images/s, seconds spent decoding the crops once) of deepfake_cli.training.train."""
    from deepfake_cli.config import load_config
    from deepfake_cli.training.train import train

    timer = _Timer()
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(None, {
            "data.root": str(data), "data.limit_per_class": limit, "data.val_fraction": 0.0,
            "model.arch": arch, "train.input_size": input_size, "train.batch_size": batch, "train.lr": lr,
            "train.epochs": 1, "train.max_steps_per_epoch": warmup + steps, "train.augment": "basic",
            "train.workers": workers, "train.out_dir": out, "runtime.num_threads": threads, "train.cpu_amp": cpu_amp,
        }, environ={})  # fmt: skip
        train(cfg, reporter=timer)  # type: ignore[arg-type]
    stamps = timer.stamps
    return steps * batch / (stamps[-1] - stamps[warmup - 1]), timer.decode_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--archs", default="resnet18,cnn_small")
    parser.add_argument("--input-size", type=int, default=None, help="default: each architecture's own")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--no-cpu-amp", action="store_true", help="skip the bf16 (--cpu-amp) run")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"data folder not found: {args.data}", file=sys.stderr)
        return 1
    os.environ.setdefault("DFDETECT_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from deepfake_cli.data.datasets import load_splits
    from deepfake_cli.models import get_model_spec

    total = (args.warmup + args.steps) * args.batch_size
    limit = math.ceil(total / 2)
    split = load_splits(args.data, limit_per_class=limit, val_fraction=0.0)["train"]
    paths, targets = split.paths, split.targets.tolist()
    print(f"{len(paths)} crops of {args.data}, batch {args.batch_size}, {args.threads} threads, "
          f"{args.warmup} warm-up + {args.steps} timed steps, dfdetect workers {args.workers}")  # fmt: skip
    ratios, amp_ratios = [], []
    for arch in args.archs.split(","):
        size = args.input_size or get_model_spec(arch).input_size
        loop = (arch, args.data, limit, size, args.batch_size, args.warmup, args.steps, args.lr, args.workers, args.threads)
        ours, decode_s = dfdetect_loop(*loop, cpu_amp=False)
        ref = reference_loop(arch, paths, targets, size, args.batch_size, args.warmup, args.steps, args.lr)
        ratios.append(ours / ref)
        line = (f"{arch:>10} @ {size}px: reference {ref:6.1f} img/s | dfdetect fp32 {ours:6.1f} img/s ({ours / ref:.2f}x)")
        if not args.no_cpu_amp:
            bf16, _ = dfdetect_loop(*loop, cpu_amp=True)
            line += f" | dfdetect --cpu-amp {bf16:6.1f} img/s ({bf16 / ref:.2f}x)"
            amp_ratios.append(bf16 / ref)
        print(f"{line} | one-time decode of {len(paths)} crops {decode_s:.1f}s", flush=True)
    for name, found in (("fp32", ratios), ("--cpu-amp", amp_ratios)):
        if found:
            print(f"target >= 1.5x with {name}: {'met' if min(found) >= 1.5 else 'NOT met'} (min ratio {min(found):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
