"""Shared fixtures: paths into ../shared (skipped when absent) and small checkpoints."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared")).resolve()
SHARED_REASON = f"real data folder {SHARED} is absent (see ../shared/README.md); CI always has it"

FFPP_C23 = SHARED / "data" / "ffpp_c23"
FFPP_FACES = SHARED / "data" / "ffpp_faces" / "train"
DFDC_FACES = SHARED / "data" / "dfdc_faces"
TORCHVISION_WEIGHTS = SHARED / "weights" / "torchvision"
PHOTOS = SHARED / "data" / "photos" / "faces"
MESONET_PHOTOS = SHARED / "data" / "photos" / "mesonet"
MULTIFACE_VIDEO = SHARED / "data" / "videos" / "facenet_example.mp4"
MESONET_WEIGHTS = SHARED / "weights" / "mesonet"
ORIGINAL_004 = FFPP_C23 / "original_sequences" / "youtube" / "c23" / "videos" / "004.mp4"


def need_shared(*paths: Path) -> None:
    """Skip the calling test with a clear reason when the shared data is missing."""
    for p in paths or (SHARED,):
        if not p.exists():
            pytest.skip(f"{SHARED_REASON}; missing {p}")


# Look-alike datasets (data/lookalike.py): smooth random scenes stand for a person in a setting.
def _scene(seed: int, size: int = 64):
    """A smooth random 'person in a setting': low-frequency colour blobs, as a thumbnail sees a face crop."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def _manipulated(scene: np.ndarray, seed: int) -> np.ndarray:
    """The same scene with its centre repainted and some noise: what a face swap changes."""
    rng = np.random.default_rng(seed)
    out = scene.astype(np.int16)
    c = scene.shape[0] // 2
    out[c - 8 : c + 8, c - 8 : c + 8] += rng.integers(-40, 40, (16, 16, 3))
    out += rng.integers(-6, 6, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_lookalike_folders(root: Path, people: int = 12) -> Path:
    """FF++-like folders: each person has two real crops and one crop in each of two fake methods."""
    for p in range(people):
        scene = _scene(p)
        for name, image in (
            (f"youtube/roi_{2 * p}.jpg", _manipulated(scene, 1000 + p)),
            (f"youtube/roi_{2 * p + 1}.jpg", _manipulated(scene, 2000 + p)),
            (f"Deepfakes/roi_{p}.jpg", _manipulated(scene, 3000 + p)),
            (f"Face2Face/roi_{p}.jpg", _manipulated(scene, 4000 + p)),
        ):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=95)
    return root


def lookalike_person(path: str) -> int:
    """The person a crop of :func:`make_lookalike_folders` shows."""
    n = int(Path(path).stem.split("_")[1])
    return n // 2 if Path(path).parent.name == "youtube" else n


def with_display_rotation(data: bytes, degrees_clockwise: int) -> bytes:
    """The video with a display rotation in its track header, as phones record portrait video."""
    matrices = {90: (0, 1, -1, 0), 270: (0, -1, 1, 0)}
    a, b, c, d = (v * 0x10000 for v in matrices[degrees_clockwise])
    out = bytearray(data)
    i = data.index(b"tkhd") - 4  # the video's track header (the only track)
    version = data[i + 8]
    matrix = i + 8 + 4 + (20 if version == 0 else 32) + 8 + 8  # past times, ids, duration, layer/volume
    assert struct.unpack(">9i", data[matrix : matrix + 36])[:5] == (0x10000, 0, 0, 0, 0x10000)
    out[matrix : matrix + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000)
    return bytes(out)


@pytest.fixture(scope="session")
def shared() -> Path:
    need_shared()
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _offline_and_quiet(tmp_path_factory):
    # Never reach for the network in tests; keep torch's cache out of $HOME.
    os.environ["DFDETECT_OFFLINE"] = "1"
    os.environ.setdefault("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_checkpoint(path: Path, arch: str = "sepcnn", num_classes: int = 2, threshold: float = 0.5, seed: int = 0,
                    provenance: dict | None = None, **kw) -> Path:
    """A real (untrained, seeded) checkpoint of ``arch`` in dfdetect's format."""
    import torch

    from deepfake_cli.models.checkpoint import build_checkpoint, save_checkpoint
    from deepfake_cli.labels import default_labels
    from deepfake_cli.models import create_model, get_model_spec

    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes)
    spec = get_model_spec(arch)
    ckpt = build_checkpoint(
        model,
        arch=arch,
        model_args={"num_classes": num_classes},
        labels=default_labels(num_classes),
        preprocessing=spec.preprocessing(),
        threshold=threshold,
        provenance=provenance or {"data": "untrained test fixture"},
        **kw,
    )
    return save_checkpoint(ckpt, path)


@pytest.fixture(scope="session")
def sepcnn_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "sepcnn.pt")


@pytest.fixture(scope="session")
def multiclass_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt7") / "sepcnn7.pt", num_classes=7)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, then back: tiny models run as fast, and a busy machine cannot stall them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
