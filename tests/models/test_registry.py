from __future__ import annotations

import pytest
import torch

from deepfake_cli.errors import PretrainedWeightsUnavailable, UnknownModelError
from deepfake_cli.models import create_model, get_model_spec, list_models

EXPECTED_PARAMS = {
    "cnn": 8_494_658,
    "cnn_small": 1_109_282,
    "resnet18": 11_177_538,
    "mobilenet_v2": 2_226_434,
    # MesoNet's published Keras models have 27,977 / 28,615 params with one
    # sigmoid output; our two-logit head adds exactly 17 (16 weights + 1 bias).
    "mesonet4": 27_977 + 17,
    "mesoinception4": 28_615 + 17,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_expected_architectures_are_registered():
    assert set(list_models()) >= {"cnn", "cnn_small", "resnet18", "efficientnet_b0", "mobilenet_v2", "sepcnn", "mesonet4", "mesoinception4"}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_exact_parameter_counts(name):
    assert n_params(create_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_declared_parameter_count_is_the_built_models(name):
    """``models list`` shows the registry's count without building the model: it must be right."""
    assert get_model_spec(name).params == n_params(create_model(name))


def test_sepcnn_is_about_175k_and_efficientnet_head():
    assert 160_000 <= n_params(create_model("sepcnn")) <= 190_000
    eff = create_model("efficientnet_b0")
    assert eff.classifier[-1].out_features == 2 and eff.classifier[-1].in_features == 1280


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [2, 7])
def test_forward_backward_every_model(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes).train()
    spec = get_model_spec(name)
    x = torch.randn(2, 3, spec.input_size, spec.input_size)
    out = model(x)
    assert out.shape == (2, num_classes)
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # The declared Grad-CAM layer exists and produces a spatial map.
    layer = model.get_submodule(spec.gradcam_layer)
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        model.eval()(x[:1])
    finally:
        handle.remove()
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][-1] > 1


def test_spec_carries_preprocessing():
    spec = get_model_spec("mesonet4")
    assert spec.input_size == 256 and spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
    assert get_model_spec("sepcnn").input_size == 128
    pre = get_model_spec("resnet18").preprocessing()
    assert pre["input_size"] == 224 and len(pre["mean"]) == 3


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError) as err:
        create_model("resnet19")
    assert "resnet18" in str(err.value) and "sepcnn" in str(err.value)


def test_pretrained_offline_uses_cached_file(tmp_path, monkeypatch):
    """ImageNet init goes through torchvision's weights API and its TORCH_HOME cache."""
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DFDETECT_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        create_model("resnet18", pretrained=True)
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "\n" not in message

    # A locally made "ImageNet" file with recognisable values stands in for the download.
    torch.manual_seed(1)
    fake_imagenet = tvm.resnet18(weights=None)
    with torch.no_grad():
        fake_imagenet.conv1.weight.fill_(0.123)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(fake_imagenet.state_dict(), cache / "resnet18-f37072fd.pth")

    model = create_model("resnet18", pretrained=True)
    assert torch.allclose(model.conv1.weight, torch.full_like(model.conv1.weight, 0.123))
    assert model.fc.out_features == 2

    # A half-downloaded file, or another model's weights under that name: one line, not a traceback.
    good = (cache / "resnet18-f37072fd.pth").read_bytes()
    for bad in (b"garbage\n", good[: len(good) // 2]):
        (cache / "resnet18-f37072fd.pth").write_bytes(bad)
        with pytest.raises(PretrainedWeightsUnavailable, match="cannot be loaded.*Delete it") as err:
            create_model("resnet18", pretrained=True)
        assert "\n" not in str(err.value)
    torch.save({"conv1.weight": torch.zeros(1)}, cache / "resnet18-f37072fd.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match="another model's file"):
        create_model("resnet18", pretrained=True)


@pytest.mark.parametrize("arch", ["sepcnn", "cnn_small", "mesonet4"])
def test_pretrained_is_refused_where_there_are_no_imagenet_weights(arch):
    """--pretrained on these changed nothing, yet the checkpoint said pretrained: true."""
    from deepfake_cli.errors import UsageError

    with pytest.raises(UsageError, match=f"'{arch}' has no ImageNet weights"):
        create_model(arch, pretrained=True)
    assert get_model_spec("resnet18").imagenet and not get_model_spec(arch).imagenet


def test_mobilenet_v2_loads_torchvisions_imagenet_file_offline(monkeypatch):
    """The official file in ../shared, found through TORCH_HOME by torchvision's own weights= path."""
    import torchvision

    from conftest import TORCHVISION_WEIGHTS, need_shared

    need_shared(TORCHVISION_WEIGHTS / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth")
    monkeypatch.setenv("TORCH_HOME", str(TORCHVISION_WEIGHTS))
    monkeypatch.setenv("DFDETECT_OFFLINE", "1")
    model = create_model("mobilenet_v2", pretrained=True)
    reference = torchvision.models.mobilenet_v2(weights=torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    ours, theirs = model.state_dict(), reference.state_dict()
    backbone = [k for k in theirs if not k.startswith("classifier.")]
    assert len(backbone) > 300 and all(torch.equal(ours[k], theirs[k]) for k in backbone)
    assert model.classifier[-1].out_features == 2
    # Not a fresh init: the first convolution is ImageNet's.
    fresh = create_model("mobilenet_v2")
    assert not torch.equal(fresh.state_dict()["features.0.0.weight"], ours["features.0.0.weight"])
    spec = get_model_spec("mobilenet_v2")
    assert spec.imagenet and spec.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("size", [96, 160, 224])
def test_mobilenet_v2_takes_any_input_size(size):
    model = create_model("mobilenet_v2").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 2)


def test_mobilenet_v2_is_torchvisions_network_without_importing_torchvision():
    """Same module names and outputs as torchvision's MobileNetV2; scoring a checkpoint skips torchvision's 2 s import."""
    import subprocess
    import sys

    import torchvision

    ours = create_model("mobilenet_v2").eval()
    theirs = torchvision.models.mobilenet_v2(num_classes=2).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    code = ("import sys; from deepfake_cli.models import create_model; create_model('mobilenet_v2'); "
            "print('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_loading_a_checkpoint_model_does_not_import_torch_dynamo(tmp_path):
    """Building a checkpoint's model must stay off torch's compiler stack: built on the meta
    device, mobilenet_v2's initialisers went through torch._refs, which imports torch._dynamo
    (about 1.8 s of every cold start of dfdetect predict)."""
    import subprocess
    import sys

    model = create_model("mobilenet_v2", num_classes=2)
    path = tmp_path / "m.pt"
    torch.save({"arch": "mobilenet_v2", "model_args": {"num_classes": 2}, "state_dict": model.state_dict()}, path)
    code = (
        "import sys, torch\n"
        "from deepfake_cli.models import build_from_checkpoint\n"
        "import deepfake_cli.inference.classifier\n"
        f"ckpt = torch.load({str(path)!r}, weights_only=True)\n"
        "built = build_from_checkpoint(ckpt, 'test')\n"
        "x = torch.rand(1, 3, 96, 96)\n"
        "built.eval()(x)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    from deepfake_cli.models import build_from_checkpoint

    built = build_from_checkpoint(torch.load(path, weights_only=True), "test")
    for name, tensor in built.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


