"""Grad-CAM / Grad-CAM++: maps, targets, hooks, memory, every registered architecture, pictures."""

from __future__ import annotations

import gc as garbage
import os
import resource
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from conftest import FFPP_FACES, need_shared
from deepfake_cli.inference import gradcam
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.errors import UsageError
from deepfake_cli.labels import default_labels
from deepfake_cli.models import create_model, get_model_spec, list_models
from deepfake_cli.models.sepcnn import SepCNN


def make_classifier(arch: str = "sepcnn", num_classes: int = 2, seed: int = 0) -> FaceClassifier:
    """An untrained, seeded model of ``arch`` behind the real classifier."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes)
    spec = get_model_spec(arch)
    return FaceClassifier(model, arch=arch, labels=default_labels(num_classes), preprocessing=spec.preprocessing())


def synthetic_crop(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, structured RGB picture (blurred noise plus a bright disc), not a flat field."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR)).copy()
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height * 0.4) ** 2 + (xx - width * 0.6) ** 2 < (min(height, width) * 0.2) ** 2
    img[disc] = (240, 200, 170)
    return img


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())


def rss_bytes() -> int:
    """Current resident memory where /proc exists, else the peak (which a leak also raises)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


CROPS = [synthetic_crop(150, 120, seed=1), synthetic_crop(96, 130, seed=2)]


@pytest.mark.parametrize("arch", list_models())
def test_every_registered_arch_explains_through_its_declared_layer(arch):
    clf = make_classifier(arch)
    rows = gradcam.explain_crops(clf, CROPS, "all")
    assert len(rows) == len(CROPS)
    for crop, row in zip(CROPS, rows):
        assert [e.target.mode for e in row] == ["predicted", "real", "fake"]
        for e in row:
            assert e.heatmap.shape == crop.shape[:2] and e.heatmap.dtype == np.float32
            assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0
            assert e.layer == get_model_spec(arch).gradcam_layer
        real, fake = row[1].heatmap, row[2].heatmap
        assert real.max() == 1.0 or fake.max() == 1.0  # some evidence somewhere
        assert not np.allclose(real, fake)
        assert row[1].target_prob + row[2].target_prob == pytest.approx(1.0, abs=1e-5)
    plus = gradcam.explain(clf, CROPS[:1], "fake", method="gradcam++")[0]
    assert plus.shape == CROPS[0].shape[:2] and 0.0 <= plus.min() and plus.max() <= 1.0
    assert no_hooks_left(clf.model)
    assert all(p.grad is None for p in clf.model.parameters())  # autograd.grad, never .backward()


def test_scores_come_from_the_same_forward_pass_as_predict():
    clf = make_classifier("sepcnn", seed=3)
    rows = gradcam.explain_crops(clf, CROPS, ["predicted", "fake"])
    expected = clf.score(CROPS)
    for row, score in zip(rows, expected):
        assert row[0].score.p_fake == pytest.approx(score.p_fake, abs=1e-5)
        assert row[0].target.name == score.label
        assert row[1].target_prob == pytest.approx(score.p_fake, abs=1e-5)


def test_multiclass_targets_resolve_to_classes_and_differ():
    clf = make_classifier("sepcnn", num_classes=7, seed=1)
    modes = gradcam.parse_targets(clf.labels, ["PREDICTED", "real", "fake", "deepfakes", "3"])
    assert modes == ("predicted", "real", "fake", "Deepfakes", "Face2Face")
    row = gradcam.explain_crops(clf, CROPS[:1], modes)[0]
    by_mode = {e.target.mode: e for e in row}
    assert by_mode["real"].target.name == "original" and by_mode["real"].target.classes == (0,)
    assert by_mode["fake"].target.name == "fake" and by_mode["fake"].target.classes == (1, 2, 3, 4, 5, 6)
    assert by_mode["fake"].target_prob == pytest.approx(row[0].score.p_fake, abs=1e-5)
    predicted = by_mode["predicted"].target.name
    assert predicted == (row[0].score.method if row[0].score.label == "fake" else "original")
    assert not np.allclose(by_mode["Deepfakes"].heatmap, by_mode["Face2Face"].heatmap)
    assert not np.allclose(by_mode["real"].heatmap, by_mode["fake"].heatmap)


def test_real_face_crop_maps_differ_between_targets_and_methods():
    need_shared(FFPP_FACES)
    crop = np.asarray(Image.open(FFPP_FACES / "youtube" / "roi_0.jpg").convert("RGB"))
    clf = make_classifier("resnet18")
    cam = gradcam.explain_crops(clf, [crop], "all")[0]
    plus = gradcam.explain_crops(clf, [crop], "all", method="gradcam++")[0]
    assert all(e.heatmap.shape == crop.shape[:2] for e in cam + plus)
    assert not np.allclose(cam[1].heatmap, cam[2].heatmap)
    assert not np.allclose(cam[2].heatmap, plus[2].heatmap)


class ConstantFakeLogit(nn.Module):
    """One output z, logits (z, 0): how imported sigmoid models (MesoNet) look."""

    def __init__(self):
        super().__init__()
        self.net = SepCNN(num_classes=1)

    def forward(self, x):
        z = self.net(x)
        return torch.cat([z, torch.zeros_like(z)], dim=1)


def test_constant_logit_still_gets_a_fake_map():
    # The explained score is the log-odds against the other classes, not the raw
    # logit: the gradient of a constant logit would be zero everywhere.
    torch.manual_seed(0)
    clf = FaceClassifier(ConstantFakeLogit(), arch="sepcnn", labels=("real", "fake"), preprocessing=get_model_spec("sepcnn").preprocessing())
    row = gradcam.explain_crops(clf, CROPS[:1], "all", layer="net.features.4")[0]
    assert row[1].heatmap.max() == 1.0 or row[2].heatmap.max() == 1.0
    assert not np.allclose(row[1].heatmap, row[2].heatmap)


def test_cam_maps_match_the_formulas():
    rng = np.random.default_rng(0)
    a = rng.random((2, 5, 4, 3)).astype(np.float32)
    g = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    # Grad-CAM: ReLU(sum_k mean(g_k) A_k)
    want = np.maximum((g.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), 0)
    got = gradcam.cam_maps(torch.from_numpy(a), torch.from_numpy(g), "gradcam").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Grad-CAM++ (eq. 19): alpha = g^2 / (2 g^2 + sum(A) g^3)
    alpha = g**2 / (2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3)
    want = np.maximum(((alpha * np.maximum(g, 0)).sum(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), 0)
    got = gradcam.cam_maps(torch.from_numpy(a), torch.from_numpy(g), "gradcam++").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # Opposite gradients (binary forced REAL vs forced FAKE) give maps with disjoint support.
    pos = gradcam.cam_maps(torch.from_numpy(a), torch.from_numpy(g), "gradcam").numpy()
    neg = gradcam.cam_maps(torch.from_numpy(a), torch.from_numpy(-g), "gradcam").numpy()
    assert not np.any((pos > 0) & (neg > 0)) and np.any(pos > 0) and np.any(neg > 0)


def test_hooks_always_removed_and_memory_flat_over_50_runs():
    clf = make_classifier("sepcnn")
    crops = [synthetic_crop(160, 160, seed=s) for s in range(2)]
    for _ in range(3):  # allocator warm-up
        gradcam.explain_crops(clf, crops, "all")
    garbage.collect()
    before = rss_bytes()
    for _ in range(50):
        gradcam.explain_crops(clf, crops, "all")
        assert no_hooks_left(clf.model)
    garbage.collect()
    grown = rss_bytes() - before
    # A leaked graph of this batch is several MB per run: 50 runs would add hundreds.
    assert grown < 40 * 2**20, f"memory grew by {grown / 2**20:.1f} MiB over 50 runs"
    assert all(p.grad is None for p in clf.model.parameters())


def test_hooks_removed_and_lock_released_when_the_layer_is_wrong():
    clf = make_classifier("sepcnn")
    with pytest.raises(UsageError, match="does not output a feature map"):
        gradcam.explain(clf, CROPS, layer="classifier.1")
    assert no_hooks_left(clf.model) and not clf.model_lock.locked()
    with pytest.raises(UsageError, match="no layer 'layer9'.*top-level layers: stem, features, pool, classifier"):
        gradcam.explain(clf, CROPS, layer="layer9")
    assert clf.score(CROPS)[0].p_fake >= 0.0  # the model still works
    # ActivationRecorder removes its hook even when the body raises.
    layer = clf.model.get_submodule("features.4")
    with pytest.raises(RuntimeError):
        with gradcam.ActivationRecorder(layer):
            assert len(layer._forward_hooks) == 1
            raise RuntimeError("boom")
    assert not layer._forward_hooks


def test_layer_override_and_inference_mode_callers():
    clf = make_classifier("resnet18")
    with torch.inference_mode():  # as a server scoring under inference_mode would call it
        maps = gradcam.explain(clf, CROPS[:1], "fake", layer="layer3")
    assert maps[0].shape == CROPS[0].shape[:2] and maps[0].max() == 1.0
    # 'layer4.1.bn2' is followed by an in-place 'out += identity': the recorded activation must not change.
    inner = gradcam.explain(clf, CROPS[:1], "fake", layer="layer4.1.bn2")[0]
    assert np.isfinite(inner).all() and inner.shape == CROPS[0].shape[:2]


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda c: gradcam.explain(c, CROPS, "bogus"), "unknown Grad-CAM target 'bogus'"),
        (lambda c: gradcam.explain(c, CROPS, "7"), "class index 0-1"),
        (lambda c: gradcam.explain(c, CROPS, "all"), "use explain_crops"),
        (lambda c: gradcam.explain(c, CROPS, method="scorecam"), "unknown Grad-CAM method"),
    ],
)
def test_usage_errors_name_the_valid_choices(call, needle):
    with pytest.raises(UsageError, match=needle):
        call(make_classifier("sepcnn"))


def test_method_spellings():
    assert gradcam.check_method("Grad-CAM++") == "gradcam++"
    assert gradcam.check_method("gradcam_plusplus") == "gradcam++"
    assert gradcam.check_method("GradCAM") == "gradcam"


def test_overlay_and_comparison_sheet_pictures():
    clf = make_classifier("sepcnn")
    crop = CROPS[0]
    rows = gradcam.explain_crops(clf, [crop], "all")[0]
    over = gradcam.overlay(crop, rows[0].heatmap, alpha=0.5)
    assert over.shape == crop.shape and over.dtype == np.uint8
    assert not np.array_equal(over, crop)
    assert np.array_equal(gradcam.overlay(crop, rows[0].heatmap, alpha=0.0), crop)
    resized = gradcam.overlay(crop, np.ones((7, 7), np.float32))  # a map of another size is stretched to the crop
    assert resized.shape == crop.shape
    one = gradcam.comparison_sheet(crop, rows[:1], tile=128)
    three = gradcam.comparison_sheet(crop, rows, caption="model | Grad-CAM on features.4", tile=128)
    assert one.dtype == np.uint8 and three.shape[1] == one.shape[1] > 3 * 128 * crop.shape[1] / crop.shape[0]
    assert three.shape[0] > 3 * 128 > one.shape[0]
    assert (three[:20] < 128).any()  # the title is drawn
    assert gradcam.verdict_text(rows[0].score).startswith(rows[0].score.label.upper())
    assert [gradcam.mode_text(e).split("  ")[0] for e in rows[1:]] == ["forced REAL", "forced FAKE"]
    with pytest.raises(ValueError):
        gradcam.comparison_sheet(crop, [])


def test_output_prefixes_mirror_folders_and_never_clash(tmp_path):
    root = tmp_path / "in"
    paths = [root / "youtube" / "roi_1.jpg", root / "Deepfakes" / "roi_1.jpg", root / "a.jpg", root / "a.png", root / "odd name!.jpg"]
    out = tmp_path / "out"
    prefixes = gradcam.output_prefixes(paths, out)
    assert prefixes == [out / "youtube" / "roi_1", out / "Deepfakes" / "roi_1", out / "a", out / "a-2", out / "odd_name_"]
    assert gradcam.output_prefixes([Path("x/one.jpg")], out) == [out / "one"]


class NegativeEvidence(nn.Module):
    """Everything the layer sees lowers the fake logit: Grad-CAM of 'fake' is zero everywhere."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

    def forward(self, x):
        m = self.features(x).mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1)


def test_blank_maps_are_flagged_not_passed_off_as_heatmaps(tmp_path):
    torch.manual_seed(0)
    clf = FaceClassifier(NegativeEvidence(), arch="sepcnn", labels=("real", "fake"),
                         preprocessing=get_model_spec("sepcnn").preprocessing())
    by_mode = {e.target.mode: e for e in gradcam.explain_crops(clf, CROPS[:1], "all", layer="features.1")[0]}
    assert by_mode["fake"].blank and not by_mode["fake"].heatmap.any()
    assert not by_mode["real"].blank
