"""Device choice, thread count and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from deepfake_cli.errors import UsageError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device} requested but CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"unknown device '{device}' (use auto, cpu or cuda)") from exc


def configure_threads(num_threads: int | None) -> None:
    if num_threads:
        torch.set_num_threads(int(num_threads))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
