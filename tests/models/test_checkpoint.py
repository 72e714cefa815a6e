from __future__ import annotations

import os
import pickle
import re

import pytest
import torch

from deepfake_cli.models.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.errors import CheckpointError
from deepfake_cli.models import create_model, get_model_spec


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn_small")
    ckpt = build_checkpoint(
        model, arch="cnn_small", model_args={"num_classes": 2}, labels=["real", "fake"],
        preprocessing=get_model_spec("cnn_small").preprocessing(), face={"detector": "mtcnn", "margin": 0.0, "square": True},
        threshold=0.37, config={"train": {"epochs": 1}}, metrics={"val_auc": 0.8}, provenance={"data": "x"},
    )
    path = save_checkpoint(ckpt, tmp_path / "sub" / "m.pt")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp") or ".partial-" in p.name]
    loaded = load_checkpoint(path)
    for key in ("arch", "model_args", "labels", "threshold", "config", "metrics", "provenance"):
        assert loaded[key] == ckpt[key]
    assert loaded["preprocessing"]["face"]["margin"] == 0.0
    rebuilt = create_model("cnn_small", checkpoint=path).eval()
    x = torch.randn(1, 3, 224, 224)
    assert torch.equal(rebuilt(x), model.eval()(x))
    clf = FaceClassifier.from_checkpoint(path)
    assert clf.threshold == pytest.approx(0.37) and clf.framing.margin == 0.0 and clf.input_size == 224


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


# A bare pickle.dumps file (protocol 4+) also makes torch warn before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_refuses_pickle_that_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dfdetect-checkpoint", "payload": RunsCode()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_truncated_empty_and_foreign_files(tmp_path, sepcnn_ckpt):
    data = sepcnn_ckpt.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(trunc)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    seed = tmp_path / "seed.pth"
    torch.save({"model_state_dict": {}, "best_val_acc": 0.9, "epoch": 3}, seed)
    with pytest.raises(CheckpointError, match="models import"):
        load_checkpoint(seed)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    # Text files fail deep inside the unpickler (KeyError, IndexError): still one clear error.
    lfs = tmp_path / "lfs.pt"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 131072\n")
    hello = tmp_path / "hello.pt"
    hello.write_text("hello\n")
    passwd = tmp_path / "passwd.pt"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        load_checkpoint(lfs)
    for text_file in (hello, passwd):
        with pytest.raises(CheckpointError, match="not a checkpoint"):
            load_checkpoint(text_file)
    # Starts like a zip archive but is not one.
    odd = tmp_path / "odd.pt"
    odd.write_bytes(b"PK\x03\x04" + b"\xff" * 60)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(odd)


def test_wrong_architecture_weights(tmp_path, sepcnn_ckpt):
    ckpt = load_checkpoint(sepcnn_ckpt)
    ckpt["arch"] = "cnn_small"
    bad = save_checkpoint(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        FaceClassifier.from_checkpoint(bad)


def test_run_checkpoints_are_named_by_their_run(tmp_path, sepcnn_ckpt):
    """Every training run writes best.pt and last.pt: outputs name them exp3/best, not 'best'."""
    import shutil

    from deepfake_cli.inference.classifier import FaceClassifier, checkpoint_label

    run = tmp_path / "runs" / "train" / "exp3"
    run.mkdir(parents=True)
    shutil.copy(sepcnn_ckpt, run / "best.pt")
    assert FaceClassifier.from_checkpoint(run / "best.pt").name == "exp3/best"
    assert checkpoint_label(run / "last.pt") == "exp3/last"
    assert checkpoint_label(tmp_path / "my_detector.pt") == "my_detector"


@pytest.mark.parametrize("exc, reason", [
    (RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/3: file write failed"),
     "PytorchStreamWriter failed writing file data/3"),
    (OSError(28, "No space left on device"), "No space left on device"),
])
def test_a_failed_save_is_one_error_naming_the_file_and_keeps_the_previous_one(tmp_path, sepcnn_ckpt, monkeypatch,
                                                                               exc, reason):
    import torch

    ckpt = load_checkpoint(sepcnn_ckpt)
    target = tmp_path / "run" / "best.pt"
    save_checkpoint(ckpt, target)
    before = target.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise exc

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=re.escape(f"{target}: cannot write the checkpoint ({reason}")):
        save_checkpoint(ckpt, target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["best.pt"]


def test_a_saved_checkpoint_has_the_umasks_mode(tmp_path, sepcnn_ckpt):
    import os

    umask = os.umask(0o022)
    try:
        path = save_checkpoint(load_checkpoint(sepcnn_ckpt), tmp_path / "last.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
