"""The first report's checkpoints ({model_state_dict, best_val_acc, epoch}) into dfdetect's format."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.errors import CheckpointError
from deepfake_cli.models.import_seed import SEED_ARCHS, import_seed
from deepfake_cli.models import create_model


class Unsafe:
    """Any class pickled into a checkpoint: loading it would run code, so it is refused."""


def seed_file(path, arch: str, seed: int = 3, rename=None, **extra):
    """A file in the first report's format holding a randomly initialised ``arch``."""
    torch.manual_seed(seed)
    model = create_model(arch).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so buffers are checked too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    state = model.state_dict()
    if rename is not None:
        state = collections.OrderedDict((rename(k), v) for k, v in state.items())
    torch.save({"model_state_dict": state, "best_val_acc": np.float64(91.25), "epoch": 7} | extra, path)
    return model


@pytest.mark.parametrize("source", sorted(SEED_ARCHS))
def test_round_trip_gives_identical_outputs(tmp_path, source):
    arch = SEED_ARCHS[source]
    original = seed_file(tmp_path / "best_model.pth", arch)
    ckpt = import_seed(tmp_path / "best_model.pth", source)
    saved = save_checkpoint(ckpt, tmp_path / "imported.pt")
    reloaded = load_checkpoint(saved)  # weights_only: the numpy metric became a plain float
    assert reloaded["metrics"] == {"best_val_acc": 91.25, "epoch": 7}
    assert reloaded["labels"] == ["real", "fake"] and reloaded["arch"] == arch
    assert reloaded["preprocessing"]["input_size"] == 224 and reloaded["preprocessing"]["mean"][0] == pytest.approx(0.485)
    assert reloaded["provenance"]["weights_matched_by"] == "names"
    classifier = FaceClassifier.from_checkpoint(saved)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(classifier.model(x), original(x))


def test_wrapped_and_renamed_state_dicts(tmp_path):
    original = seed_file(tmp_path / "dp.pth", "cnn_small", rename=lambda k: "module." + k)
    ckpt = import_seed(tmp_path / "dp.pth", "seed-cnn-small")
    assert ckpt["provenance"]["weights_matched_by"] == "names"
    # A script that named its layers differently: same tensors, same order.
    seed_file(tmp_path / "renamed.pth", "cnn_small", rename=lambda k: "net." + k.replace(".", "_"))
    renamed = import_seed(tmp_path / "renamed.pth", "seed-cnn-small")
    assert renamed["provenance"]["weights_matched_by"] == "order"
    for key, value in original.state_dict().items():
        assert torch.equal(renamed["state_dict"][key], value)


def test_refuses_unsafe_wrong_and_foreign_files(tmp_path):
    seed_file(tmp_path / "unsafe.pth", "cnn_small", optimizer=Unsafe())
    with pytest.raises(CheckpointError, match="refused"):
        import_seed(tmp_path / "unsafe.pth", "seed-cnn-small")
    seed_file(tmp_path / "r18.pth", "resnet18")
    with pytest.raises(CheckpointError, match="do not fit"):
        import_seed(tmp_path / "r18.pth", "seed-cnn")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="first report's format"):
        import_seed(tmp_path / "other.pth", "seed-resnet18")
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        import_seed(tmp_path / "truncated.pth", "seed-resnet18")


def test_seed_file_is_rejected_by_the_checkpoint_loader_with_a_hint(tmp_path):
    seed_file(tmp_path / "plain.pth", "cnn_small", best_val_acc=91.25)
    with pytest.raises(CheckpointError, match="models import seed-resnet18"):
        load_checkpoint(tmp_path / "plain.pth")
    seed_file(tmp_path / "numpy_metric.pth", "cnn_small")  # refused before its keys can be seen
    with pytest.raises(CheckpointError, match="dfdetect models import"):
        load_checkpoint(tmp_path / "numpy_metric.pth")
