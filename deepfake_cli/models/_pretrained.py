"""ImageNet initialisation through torchvision's weights API, usable offline.

torchvision caches downloads in ``$TORCH_HOME/hub/checkpoints/<file>``. If that
file is there we use it; otherwise we try the download once (unless
``DFDETECT_OFFLINE=1``) and fail with one line saying where to put the file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from deepfake_cli.errors import PretrainedWeightsUnavailable

DOWNLOAD_TIMEOUT_S = 20.0


def cached_weights_path(weights) -> Path:
    """Where torchvision looks for (and saves) the file behind ``weights``."""
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def offline() -> bool:
    return os.environ.get("DFDETECT_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def ensure_weights_available(weights, arch: str) -> Path:
    """Make sure torchvision will find ``weights`` in its cache, or raise one clear error."""
    path = cached_weights_path(weights)
    if path.is_file():
        return path
    where = f"put {path.name} (from {weights.url}) in {path.parent} (set TORCH_HOME to choose another cache)"
    if offline():
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {arch} are not cached and DFDETECT_OFFLINE is set: {where}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(weights.url, str(path), progress=False)
    except Exception as exc:  # no network, DNS failure, HTTP error, hash mismatch
        path.unlink(missing_ok=True)
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {arch} could not be downloaded ({type(exc).__name__}): {where}"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    return path
