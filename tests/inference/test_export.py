"""ONNX / TorchScript export, optional INT8, verified against PyTorch on real face crops."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import FFPP_FACES, MESONET_WEIGHTS, need_shared
from deepfake_cli.models.checkpoint import save_checkpoint
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.faces.detector import RESIZE_INTERPOLATION
from deepfake_cli.errors import ExportError, UsageError
from deepfake_cli.inference.export import ONNX_OPSET, ExportedModel, export_checkpoint
from deepfake_cli.media.images import load_image


@pytest.fixture(scope="module")
def face_crops() -> list[np.ndarray]:
    """Real FaceForensics++ crops: 3 real, 3 Deepfakes."""
    need_shared(FFPP_FACES)
    paths = sorted((FFPP_FACES / "youtube").glob("*.jpg"))[:3] + sorted((FFPP_FACES / "Deepfakes").glob("*.jpg"))[:3]
    return [load_image(p) for p in paths]


@pytest.fixture(scope="module")
def meso4_ckpt(tmp_path_factory):
    pytest.importorskip("h5py")
    from deepfake_cli.models.import_keras import import_mesonet

    need_shared(MESONET_WEIGHTS / "Meso4_DF.h5")
    return save_checkpoint(import_mesonet(MESONET_WEIGHTS / "Meso4_DF.h5"), tmp_path_factory.mktemp("meso") / "meso4_df.pt")


def pytorch_logits(ckpt, crops) -> tuple[torch.Tensor, np.ndarray]:
    classifier = FaceClassifier.from_checkpoint(ckpt)
    batch = classifier.to_tensor(crops)
    with torch.inference_mode():
        return batch, classifier.model(batch).numpy()


@pytest.mark.parametrize("which", ["sepcnn", "meso4"])
def test_onnx_matches_pytorch_on_real_crops(tmp_path, face_crops, which, request):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ckpt = request.getfixturevalue("sepcnn_ckpt" if which == "sepcnn" else "meso4_ckpt")
    result = export_checkpoint(ckpt, "onnx", tmp_path / "model.onnx", crops=face_crops)
    v = result.verification
    assert v.ok and v.inputs == 6 and v.input_kind == "face crops" and v.label_agreement == 1.0
    assert v.max_abs_diff_logits < 1e-4 and v.max_abs_diff_probs < 1e-4 and result.opset == ONNX_OPSET

    graph = onnx.load(str(tmp_path / "model.onnx"))
    assert graph.opset_import[0].version >= 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # Our own check, independent of the verification inside export: batches of 1 and 6 (dynamic axis).
    batch, reference = pytorch_logits(ckpt, face_crops)
    runtime = ExportedModel(tmp_path / "model.onnx")
    assert np.abs(runtime(batch.numpy()) - reference).max() < 1e-4
    assert np.abs(runtime(batch[:1].numpy()) - reference[:1]).max() < 1e-4
    assert runtime.metadata["labels"] == ["real", "fake"]
    assert runtime.metadata["preprocessing"]["input_size"] == batch.shape[-1]
    assert runtime.metadata["preprocessing"]["interpolation"] == RESIZE_INTERPOLATION


def test_torchscript_matches_pytorch(tmp_path, face_crops, sepcnn_ckpt):
    result = export_checkpoint(sepcnn_ckpt, "torchscript", tmp_path / "model.torchscript", crops=face_crops)
    assert result.verification.max_abs_diff_logits < 1e-5
    batch, reference = pytorch_logits(sepcnn_ckpt, face_crops)
    runtime = ExportedModel(tmp_path / "model.torchscript")
    assert np.abs(runtime(batch.numpy()) - reference).max() < 1e-5
    assert runtime.metadata["arch"] == "sepcnn" and runtime.metadata["threshold"] == 0.5


def test_int8_dynamic_onnx_is_smaller_and_close(tmp_path, face_crops, meso4_ckpt):
    pytest.importorskip("onnxruntime")
    fp32 = export_checkpoint(meso4_ckpt, "onnx", tmp_path / "fp32.onnx", crops=face_crops)
    int8 = export_checkpoint(meso4_ckpt, "onnx", tmp_path / "int8.onnx", quantize="dynamic", crops=face_crops)
    assert int8.size_bytes < 0.5 * fp32.size_bytes
    assert int8.verification.tolerance is None and 0 < int8.verification.max_abs_diff_probs < 0.05
    # A tolerance INT8 cannot meet is an error, and nothing is left behind.
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_checkpoint(meso4_ckpt, "onnx", tmp_path / "strict.onnx", quantize="dynamic", crops=face_crops, tolerance=1e-7)
    assert not (tmp_path / "strict.onnx").exists()


def test_int8_dynamic_torchscript_quantizes_linear_layers(tmp_path, sepcnn_ckpt):
    fp32 = export_checkpoint(sepcnn_ckpt, "torchscript", tmp_path / "fp32.torchscript")
    int8 = export_checkpoint(sepcnn_ckpt, "torchscript", tmp_path / "int8.torchscript", quantize="dynamic")
    assert int8.verification.input_kind == "random images" and int8.verification.inputs == 8
    assert int8.size_bytes < fp32.size_bytes
    assert int8.verification.max_abs_diff_probs < 0.05


def test_bad_options(tmp_path, sepcnn_ckpt):
    with pytest.raises(UsageError, match="--format"):
        export_checkpoint(sepcnn_ckpt, "tflite", tmp_path / "m")
    with pytest.raises(UsageError, match="--quantize"):
        export_checkpoint(sepcnn_ckpt, "onnx", tmp_path / "m.onnx", quantize="static")
    pytest.importorskip("onnxruntime")
    with pytest.raises(UsageError, match="opset"):
        export_checkpoint(sepcnn_ckpt, "onnx", tmp_path / "m.onnx", opset=13)


def test_onnx_export_of_the_shipped_default_model(tmp_path, face_crops):
    """The default model (mobilenet_v2 since issue 19) exports and matches PyTorch on real crops."""
    pytest.importorskip("onnxruntime")
    from deepfake_cli.models.store import resolve_model

    ckpt = resolve_model(None)
    result = export_checkpoint(ckpt, "onnx", tmp_path / "default.onnx", crops=face_crops)
    v = result.verification
    assert v.ok and v.inputs == 6 and v.label_agreement == 1.0 and v.max_abs_diff_probs < 1e-4
    batch, reference = pytorch_logits(ckpt, face_crops)
    assert np.abs(ExportedModel(tmp_path / "default.onnx")(batch.numpy()) - reference).max() < 1e-4
def _failing_jit_save(seen, exc):
    """torch.jit.save writing half of what it would, then failing (a disk filling up)."""
    real = torch.jit.save

    def fake(module, f, _extra_files=None):
        import io

        buf = io.BytesIO()
        real(module, buf, _extra_files=_extra_files)
        half = buf.getvalue()[: len(buf.getvalue()) // 2]
        if isinstance(f, (str, bytes)) or hasattr(f, "__fspath__"):
            with open(f, "wb") as fh:
                fh.write(half)
        else:
            f.write(half)
        seen.append(sorted(p.name for p in seen_dir[0].iterdir()))
        raise exc

    seen_dir = []
    return fake, seen_dir


@pytest.mark.parametrize("exc, error, needle", [
    (RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0"),
     ExportError, "failed"),
    (OSError(28, "No space left on device"), ExportError, "model.torchscript: cannot write the torchscript export (No space left on device)"),
])
def test_a_failed_torchscript_save_never_leaves_a_file_under_the_final_name(tmp_path, sepcnn_ckpt, monkeypatch,
                                                                             exc, error, needle):
    out = tmp_path / "model.torchscript"
    seen: list = []
    fake, seen_dir = _failing_jit_save(seen, exc)
    seen_dir.append(tmp_path)
    monkeypatch.setattr(torch.jit, "save", fake)
    with pytest.raises(error, match=re.escape(needle)):
        export_checkpoint(sepcnn_ckpt, "torchscript", out)
    # While it was being written (where a real full disk aborts torch's writer, exit 134), the
    # final name did not exist; afterwards nothing is left, under any name.
    assert "model.torchscript" not in seen[0]
    assert list(tmp_path.iterdir()) == []
    # A file replaced with --force is kept whole when the new one fails.
    out.write_bytes(b"previous export")
    with pytest.raises(error):
        export_checkpoint(sepcnn_ckpt, "torchscript", out, force=True)
    assert out.read_bytes() == b"previous export" and list(tmp_path.iterdir()) == [out]


def test_a_replaced_torchscript_export_is_whole_and_has_the_umask_mode(tmp_path, sepcnn_ckpt):
    import os

    out = tmp_path / "model.torchscript"
    out.write_bytes(b"previous export")
    export_checkpoint(sepcnn_ckpt, "torchscript", out, force=True)
    assert ExportedModel(out).metadata["arch"] == "sepcnn"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["model.torchscript"]
