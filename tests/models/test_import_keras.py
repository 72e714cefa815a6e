"""MesoNet's published Keras weights imported without TensorFlow, on MesoNet's own test images."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from conftest import MESONET_PHOTOS, MESONET_WEIGHTS, need_shared
from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.errors import CheckpointError, UsageError
from deepfake_cli.media.images import load_image
from deepfake_cli.models.import_keras import MESONET_LICENSE, import_mesonet, read_keras_layers

h5py = pytest.importorskip("h5py")


def mesonet_images() -> tuple[list[str], list[np.ndarray]]:
    need_shared(MESONET_PHOTOS)
    paths = sorted(MESONET_PHOTOS.glob("*/*.jpg"))
    return [p.parent.name for p in paths], [load_image(p) for p in paths]


def weights(name: str):
    path = MESONET_WEIGHTS / name
    need_shared(path)
    return path


@pytest.mark.parametrize(
    "file, arch", [("Meso4_DF.h5", "mesonet4"), ("MesoInception_DF.h5", "mesoinception4")]
)
def test_df_weights_score_mesonet_test_images(file, arch):
    """Whole images (they are face crops), as MesoNet's own example runs them."""
    folders, crops = mesonet_images()
    assert sorted(folders) == ["df", "df", "real", "real"]
    ckpt = import_mesonet(weights(file))
    assert ckpt["arch"] == arch
    scores = FaceClassifier.from_checkpoint(ckpt).score(crops)
    for folder, score in zip(folders, scores):
        assert score.label == ("fake" if folder == "df" else "real"), (folder, score)
        assert abs(score.probs["real"] + score.probs["fake"] - 1) < 1e-6
    # Confident, not marginal: published Meso4_DF gives about 0.95/0.98 fake and 0.01/0.003 for the real ones.
    p_fake = [s.p_fake for s in scores]
    assert min(p for p, f in zip(p_fake, folders) if f == "df") > 0.9
    assert max(p for p, f in zip(p_fake, folders) if f == "real") < 0.05


# ---- an independent Keras-semantics forward pass in NumPy (NHWC, float64) ----


def _conv(x: np.ndarray, arrays: dict, dilation: int = 1) -> np.ndarray:
    kernel = arrays["kernel"].astype(np.float64)  # (kh, kw, in, out), Keras layout
    kh, kw = kernel.shape[:2]
    pad_h, pad_w = (kh - 1) * dilation, (kw - 1) * dilation  # 'same', stride 1
    xp = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    h, w = x.shape[:2]
    out = np.zeros((h, w, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += xp[i * dilation : i * dilation + h, j * dilation : j * dilation + w] @ kernel[i, j]
    return np.maximum(out + arrays["bias"], 0.0)  # every MesoNet Conv2D has activation='relu'


def _bn(x: np.ndarray, a: dict) -> np.ndarray:
    return a["gamma"] * (x - a["moving_mean"]) / np.sqrt(a["moving_variance"] + 1e-3) + a["beta"]


def _pool(x: np.ndarray, p: int) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h // p, p, w // p, p, c).max(axis=(1, 3))


def keras_reference(layers: dict, image_hwc: np.ndarray) -> float:
    """P(real) of the Keras model (MesoNet's classifiers.py) for one 256x256x3 image in [0, 1]."""
    convs = iter(a for _, a in layers["conv2d"])
    bns = iter(a for _, a in layers["batch_normalization"])
    x = image_hwc.astype(np.float64)
    if len(layers["conv2d"]) == 16:
        for _ in range(2):  # InceptionLayer(a, b, c, d), BatchNorm, MaxPool 2
            branches = [_conv(x, next(convs))]
            for dilation in (1, 2, 3):
                branches.append(_conv(_conv(x, next(convs)), next(convs), dilation))
            x = _pool(_bn(np.concatenate(branches, axis=-1), next(bns)), 2)
        blocks = (2, 4)
    else:
        blocks = (2, 2, 2, 4)
    for p in blocks:
        x = _pool(_bn(_conv(x, next(convs)), next(bns)), p)
    (_, d1), (_, d2) = layers["dense"]
    y = x.reshape(-1) @ d1["kernel"] + d1["bias"]  # Keras Flatten: channels-last order
    y = np.where(y > 0, y, 0.1 * y)  # LeakyReLU(alpha=0.1)
    z = float((y @ d2["kernel"] + d2["bias"])[0])
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("file", ["Meso4_DF.h5", "MesoInception_DF.h5"])
def test_imported_model_equals_keras_reference(file):
    """Kernel layout, padding, BN epsilon, flatten order and the label mapping, checked end to end."""
    _, crops = mesonet_images()
    path = weights(file)
    classifier = FaceClassifier.from_checkpoint(import_mesonet(path))
    batch = classifier.to_tensor(crops[:2])
    p_real = classifier.predict_proba(crops[:2])[:, 0]
    layers = read_keras_layers(path)
    for x, ours in zip(batch, p_real):
        reference = keras_reference(layers, x.permute(1, 2, 0).numpy())
        assert abs(reference - ours) < 1e-5, (reference, ours)


def test_checkpoint_records_provenance_and_preprocessing(tmp_path):
    path = weights("Meso4_DF.h5")
    saved = save_checkpoint(import_mesonet(path), tmp_path / "meso4_df.pt")
    ckpt = load_checkpoint(saved)  # weights_only round trip
    prov = ckpt["provenance"]
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["license"] == MESONET_LICENSE and prov["source_file"] == "Meso4_DF.h5"
    assert "margin 0.3" in prov["face_framing"]
    assert ckpt["labels"] == ["real", "fake"] and ckpt["threshold"] == 0.5
    pre = ckpt["preprocessing"]
    assert pre["input_size"] == 256 and pre["mean"] == [0.0] * 3 and pre["std"] == [1.0] * 3
    assert pre["face"] == {"detector": "mtcnn", "margin": 0.3, "square": True}
    # The fake logit is pinned at 0 so softmax reproduces the single sigmoid.
    fc2 = ckpt["state_dict"]["head.fc2.weight"]
    assert fc2.shape == (2, 16) and torch.count_nonzero(fc2[1]) == 0


@pytest.mark.parametrize("file", ["Meso4_F2F.h5", "MesoInception_F2F.h5"])
def test_f2f_weights_import(file):
    ckpt = import_mesonet(weights(file))
    assert ckpt["arch"] == ("mesonet4" if file.startswith("Meso4") else "mesoinception4")
    FaceClassifier.from_checkpoint(ckpt)  # strict load


def test_wrong_arch_and_foreign_files(tmp_path):
    with pytest.raises(UsageError, match="--arch mesoinception4"):
        import_mesonet(weights("MesoInception_DF.h5"), arch="mesonet4")
    not_h5 = tmp_path / "notes.h5"
    not_h5.write_text("not hdf5")
    with pytest.raises(CheckpointError, match="not a readable HDF5"):
        import_mesonet(not_h5)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["layer_names"] = [b"dense_1"]
        g = h5.create_group("dense_1")
        g.attrs["weight_names"] = [b"dense_1/kernel:0", b"dense_1/bias:0"]
        g["dense_1/kernel:0"] = np.zeros((4, 1), np.float32)
        g["dense_1/bias:0"] = np.zeros((1,), np.float32)
    with pytest.raises(CheckpointError, match="not a MesoNet"):
        import_mesonet(other)
    with pytest.raises(CheckpointError, match="not found"):
        import_mesonet(tmp_path / "missing.h5")
