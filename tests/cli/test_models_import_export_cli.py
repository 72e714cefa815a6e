from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import FFPP_FACES, MESONET_PHOTOS, MESONET_WEIGHTS, need_shared
from deepfake_cli.cli.app import app
from deepfake_cli.models import create_model

runner = CliRunner()


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "my_models"
    monkeypatch.setenv("DFDETECT_MODELS_DIR", str(folder))
    return folder


def test_import_mesonet_lists_and_predicts_by_name(models_dir):
    pytest.importorskip("h5py")
    need_shared(MESONET_WEIGHTS, MESONET_PHOTOS)
    result = runner.invoke(app, ["models", "import", "mesonet", str(MESONET_WEIGHTS / "Meso4_DF.h5"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["name"] == "meso4_df" and info["in_models_dir"] and info["arch"] == "mesonet4"
    assert (models_dir / "meso4_df.pt").is_file() and info["provenance"]["license"] == "Apache-2.0, DariusAf/MesoNet"

    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["models"]
    assert [(m["name"], m["arch"]) for m in listed if m["path"].startswith(str(models_dir))] == [("meso4_df", "mesonet4")]

    result = runner.invoke(app, ["predict", str(MESONET_PHOTOS), "--no-detect", "-m", "meso4_df", "--json"])
    assert result.exit_code == 0, result.output
    verdicts = {r["path"].split("/")[-1]: r["verdict"] for r in json.loads(result.stdout)}
    assert len(verdicts) == 4
    for name, verdict in verdicts.items():
        assert verdict == ("fake" if name.startswith("df") else "real"), verdicts

    again = runner.invoke(app, ["models", "import", "mesonet", str(MESONET_WEIGHTS / "Meso4_DF.h5")])
    assert again.exit_code == 2 and "--force" in again.stderr
    wrong = runner.invoke(app, ["models", "import", "mesonet", str(MESONET_WEIGHTS / "Meso4_DF.h5"), "--arch", "mesoinception4", "--name", "x"])
    assert wrong.exit_code == 2 and "--arch mesonet4" in wrong.stderr


def test_import_seed_resnet18_to_explicit_path(tmp_path, models_dir):
    torch.manual_seed(0)
    model = create_model("resnet18")
    seed = tmp_path / "best_model.pth"
    torch.save({"model_state_dict": model.state_dict(), "best_val_acc": 0.9312, "epoch": 9}, seed)
    out = tmp_path / "imported" / "r18.pt"
    result = runner.invoke(app, ["models", "import", "seed-resnet18", str(seed), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["path"] == str(out) and not info["in_models_dir"] and info["arch"] == "resnet18"
    assert info["metrics"] == {"best_val_acc": 0.9312, "epoch": 9}
    assert info["provenance"]["imported_from"] == "seed-resnet18"

    bad = runner.invoke(app, ["models", "import", "seed-cnn", str(seed), "--out", str(tmp_path / "cnn.pt")])
    assert bad.exit_code == 1 and "do not fit" in bad.stderr and not (tmp_path / "cnn.pt").exists()


def test_export_onnx_by_path_verifies_on_crops(tmp_path, sepcnn_ckpt):
    pytest.importorskip("onnxruntime")
    need_shared(FFPP_FACES)
    crops = sorted((FFPP_FACES / "NeuralTextures").glob("*.jpg"))[:4]
    out = tmp_path / "sepcnn.onnx"
    args = ["models", "export", str(sepcnn_ckpt), "--format", "onnx", "--out", str(out), "--json"]
    for crop in crops:
        args += ["--verify-on", str(crop)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["path"] == str(out) and out.is_file() and info["opset"] >= 17
    v = info["verification"]
    assert v["inputs"] == 4 and v["input_kind"] == "face crops" and v["ok"]
    assert v["max_abs_diff_logits"] < 1e-4 and v["max_abs_diff_probs"] < 1e-4


def test_export_torchscript_default_name_in_cwd(tmp_path, sepcnn_ckpt, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["models", "export", str(sepcnn_ckpt), "--format", "torchscript", "--quantize", "dynamic"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sepcnn.int8.torchscript").is_file()
    assert "sepcnn.int8.torchscript" in result.stdout and "random images" in result.stdout

    # The same export again is refused without --force (models import does the same).
    again = runner.invoke(app, ["models", "export", str(sepcnn_ckpt), "--format", "torchscript", "--quantize", "dynamic"])
    assert again.exit_code == 2 and "exists; pass --force" in again.stderr
    forced = runner.invoke(app, ["models", "export", str(sepcnn_ckpt), "-F", "torchscript", "--quantize", "dynamic", "-f"])
    assert forced.exit_code == 0, forced.output
    # An export given where a checkpoint goes says what it is.
    used = runner.invoke(app, ["predict", str(tmp_path / "nothing.jpg"), "-m", str(tmp_path / "sepcnn.int8.torchscript")])
    assert used.exit_code == 1 and "a TorchScript export" in used.stderr and "Traceback" not in used.output
    # A training run's checkpoint is exported under its run's name, not as best.onnx for every run.
    from deepfake_cli.inference.export import default_export_path

    assert default_export_path(tmp_path / "runs" / "exp3" / "best.pt", "onnx").name == "exp3_best.onnx"

    bad = runner.invoke(app, ["models", "export", str(sepcnn_ckpt), "--format", "tflite"])
    assert bad.exit_code == 2 and "--format" in bad.stderr
    missing = runner.invoke(app, ["models", "export", "no_such_model", "--format", "onnx"])
    assert missing.exit_code == 1 and "no_such_model" in missing.stderr
