"""``dfdetect train`` and ``dfdetect evaluate`` through Typer's CliRunner on real crops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import FFPP_FACES, need_shared
from deepfake_cli.cli.app import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny cnn_small run at 48 px, shared by the CLI tests."""
    need_shared(FFPP_FACES)
    project = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()  # --threads 1 sets torch's global thread count: restore it
    result = runner.invoke(app, [
        "train", "--data", str(FFPP_FACES), "--arch", "cnn_small", "--input-size", "48", "--epochs", "2",
        "--limit-per-class", "24", "-b", "16", "--lr", "1e-3", "--optimizer", "adamw", "--scheduler", "cosine",
        "--augment", "basic", "--jpeg-augment", "--rotation", "5", "--margin", "0", "--workers", "0",
        "--cpu-amp", "--threads", "1", "--project", str(project), "--name", "tiny", "--json",
    ])  # fmt: skip
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr
    return {**json.loads(result.stdout), "stderr": result.stderr}


def test_train_writes_a_run_and_prints_its_summary(trained):
    assert trained["run_dir"].endswith("tiny") and trained["epochs"] == 2
    assert trained["best"].endswith("best.pt") and trained["select_metric"] == "auc"
    lines = open(trained["run_dir"] + "/metrics.jsonl").read().splitlines()
    assert len(lines) == 2
    config = json.load(open(trained["run_dir"] + "/config.json"))
    assert config["train"]["scheduler"] == "cosine" and config["face"]["margin"] == 0.0
    # 24 crops a class leave a handful for validation: the threshold chosen there is said to be noisy.
    assert "real and" in trained["stderr"] and "a noisy choice below 20 of each" in trained["stderr"]
    assert "exists (another run)" not in trained["stderr"]


def test_a_taken_run_name_is_said_before_the_run_writes_elsewhere(trained):
    project = Path(trained["run_dir"]).parent
    result = runner.invoke(app, [
        "train", "--data", str(FFPP_FACES), "--arch", "cnn_small", "--input-size", "32", "--epochs", "1",
        "--limit-per-class", "8", "-b", "8", "--workers", "0", "--threads", "1", "--project", str(project),
        "--name", "tiny", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["run_dir"] == str(project / "tiny2")
    assert f"{project / 'tiny'} exists (another run): this run writes to {project / 'tiny2'}" in " ".join(result.stderr.split())


def test_evaluate_reports_on_the_models_own_val_split(trained, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "-m", trained["best"], "--data", str(FFPP_FACES), "--limit-per-class", "10",
                                 "--out", str(out), "--threads", "1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["data"]["split"] == "val"  # no test split; trained on this data: never its train crops
    assert report["frame"]["n"] == 20 and report["frame"]["auc"] is not None
    for name in ("report.json", "report.md", "confusion.csv", "confusion.png", "roc.png", "predictions.csv", "config.json"):
        assert (out / name).is_file(), name
    assert "AUC" in result.stderr
    assert "are not used" not in result.stderr
    # Another carve-out asked for: the training run's is kept (its val holds no training crop), and said so.
    again = runner.invoke(app, ["evaluate", "-m", trained["best"], "--data", str(FFPP_FACES), "--limit-per-class", "10",
                                "--out", str(tmp_path / "again"), "--threads", "1", "--json", "--val-fraction", "0.3"])
    assert again.exit_code == 0, again.stderr
    assert "its own carve-out (val fraction 0.15, seed 0) is kept" in again.stderr and "val fraction 0.3" in again.stderr
    assert json.loads(again.stdout)["frame"]["n"] == 20


def test_evaluate_threshold_from_val_updates_the_checkpoint(trained, tmp_path):
    import shutil

    from deepfake_cli.models.checkpoint import load_checkpoint

    model = tmp_path / "copy.pt"
    shutil.copy(trained["best"], model)
    result = runner.invoke(app, ["evaluate", "-m", str(model), "--data", str(FFPP_FACES), "--limit-per-class", "20",
                                 "--split", "val", "--threshold-from", "val", "--threshold-method", "youden",
                                 "--out", str(tmp_path / "e"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert load_checkpoint(model)["threshold"] == pytest.approx(report["threshold"])
    assert "written into" in result.stderr
    both = runner.invoke(app, ["evaluate", "-m", str(model), "--data", str(FFPP_FACES), "--threshold", "0.3",
                               "--threshold-from", "val", "--out", str(tmp_path / "e2")])  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.stderr


def test_evaluate_tta_flip_calibrates_the_threshold_with_the_views_it_writes(trained, tmp_path):
    """--tta flip --threshold-from val: the threshold and the views it was chosen with land together
    in the checkpoint, and later commands score that checkpoint the same way."""
    import shutil

    from deepfake_cli.models.checkpoint import load_checkpoint

    model = tmp_path / "copy.pt"
    shutil.copy(trained["best"], model)
    common = ["--data", str(FFPP_FACES), "--limit-per-class", "20", "--split", "val", "--threads", "1", "--json"]
    plain = runner.invoke(app, ["evaluate", "-m", str(model), *common, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.stderr
    result = runner.invoke(app, ["evaluate", "-m", str(model), *common, "--tta", "flip", "--threshold-from", "val",
                                 "--out", str(tmp_path / "flip")])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "mirror image" in result.stderr
    report = json.loads(result.stdout)
    ckpt = load_checkpoint(model)
    assert ckpt["preprocessing"]["tta"] == "flip" and ckpt["metrics"]["threshold_calibration"]["tta"] == "flip"
    assert report["model"]["tta"] == "flip" and json.loads(plain.stdout)["model"]["tta"] == "none"
    # The checkpoint now scores with flips by default ("auto"); --tta none overrides it.
    again = runner.invoke(app, ["evaluate", "-m", str(model), *common, "--out", str(tmp_path / "again")])
    assert json.loads(again.stdout)["frame"]["auc"] == pytest.approx(report["frame"]["auc"])
    crop = str(next((FFPP_FACES / "youtube").glob("*.jpg")))
    runs = {tta: runner.invoke(app, ["predict", crop, "-m", str(model), "--no-detect", "--json", "--tta", tta])
            for tta in ("auto", "none")}
    assert all(r.exit_code in (0, 3) for r in runs.values()), [r.stderr for r in runs.values()]
    assert json.loads(runs["auto"].stdout)[0]["p_fake"] != json.loads(runs["none"].stdout)[0]["p_fake"]
    assert "flip TTA" in runs["auto"].stderr and "flip TTA" not in runs["none"].stderr
    # Its threshold was chosen with flips: scoring without them says so, and a threshold set by hand does not.
    assert "calibrated with test-time views 'flip'" in runs["none"].stderr
    assert "calibrated with" not in runs["auto"].stderr
    own = runner.invoke(app, ["predict", crop, "-m", str(model), "--no-detect", "--json", "--tta", "none", "-t", "0.5"])
    assert own.exit_code in (0, 3) and "calibrated with" not in own.stderr


def test_merged_checkpoint_gets_the_val_figures_its_calibration_measured(trained, tmp_path):
    """A merged checkpoint has no training figures: evaluate --threshold-from val records the
    val split's, which models info then shows; the merge's provenance names both parents."""
    from deepfake_cli.models.checkpoint import load_checkpoint

    merged = tmp_path / "merged.pt"
    result = runner.invoke(app, ["models", "merge", str(trained["best"]), str(trained["last"]), "-w", "0.5", "-o", str(merged)])
    assert result.exit_code == 0, result.output
    assert "val_auc" not in load_checkpoint(merged)["metrics"]
    common = ["--data", str(FFPP_FACES), "--limit-per-class", "20", "--split", "val", "--threads", "1", "--json"]
    result = runner.invoke(app, ["evaluate", "-m", str(merged), *common, "--threshold-from", "val", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    metrics = load_checkpoint(merged)["metrics"]
    assert metrics["val_auc"] == pytest.approx(report["frame"]["auc"]) and metrics["val_figures_from"].startswith("evaluate")
    assert metrics["threshold"] == pytest.approx(report["threshold"])
    info = json.loads(runner.invoke(app, ["models", "info", str(merged), "--json"]).stdout)
    assert [m["weight"] for m in info["provenance"]["merged_from"]] == [0.5, 0.5]
    # A trained checkpoint keeps its own training figures.
    trained_copy = tmp_path / "trained.pt"
    trained_copy.write_bytes(Path(trained["best"]).read_bytes())
    before = load_checkpoint(trained_copy)["metrics"]["val_auc"]
    runner.invoke(app, ["evaluate", "-m", str(trained_copy), *common, "--threshold-from", "val", "--out", str(tmp_path / "t")])
    assert load_checkpoint(trained_copy)["metrics"]["val_auc"] == before


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "--arch", "sepcnn"], 2, "no training data"),
        (["train", "--data", "/nonexistent/data", "--arch", "sepcnn"], 1, "dataset not found"),
        (["train", "--data", str(FFPP_FACES), "--augment", "wild"], 2, "augment"),
        (["train", "--data", str(FFPP_FACES), "--epochs", "0"], 2, "train.epochs"),
        (["train", "--data", str(FFPP_FACES), "--arch", "nope", "--limit-per-class", "2"], 1, "unknown model architecture"),
        (["train", "--data", str(FFPP_FACES), "--arch", "mesonet4", "--pretrained"], 2, "'mesonet4' has no ImageNet weights"),
        (["evaluate", "-m", "/nonexistent/model.pt", "--data", str(FFPP_FACES)], 1, "not found"),
    ],
)
def test_errors_are_one_line_with_exit_codes(args, code, message):
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr


def test_a_failed_evaluate_leaves_no_empty_numbered_report_folder(sepcnn_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crops" / "real").mkdir(parents=True)  # a folder without a single crop
    result = runner.invoke(app, ["evaluate", "-m", str(sepcnn_ckpt), "--data", str(tmp_path / "crops")])
    assert result.exit_code == 1, result.stderr
    assert not (tmp_path / "runs" / "evaluate").exists() or not list((tmp_path / "runs" / "evaluate").iterdir())


def test_resume_with_changed_options_is_a_usage_error(trained):
    result = runner.invoke(app, ["train", "--resume", trained["last"], "--lr", "0.5"])
    assert result.exit_code == 2 and "--resume continues the run" in result.stderr
    done = runner.invoke(app, ["train", "--resume", trained["last"]])
    assert done.exit_code == 2 and "trained through epoch 2 (--epochs 2); pass --epochs above 2" in " ".join(done.stderr.split())


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_ones(tmp_path, monkeypatch):
    """torch's writer raises RuntimeError (inline_container) for ENOSPC: exit 1, no traceback."""
    need_shared(FFPP_FACES)
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # epoch 1's best.pt and last.pt are written, then the disk is full
            f.write(b"PK\x03\x04 half")
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    threads = torch.get_num_threads()
    result = runner.invoke(app, [
        "train", "--data", str(FFPP_FACES), "--arch", "cnn_small", "--input-size", "32", "--epochs", "2",
        "--limit-per-class", "8", "-b", "8", "--workers", "0", "--threads", "1", "--project", str(tmp_path),
        "--name", "full", "--select-metric", "loss",
    ])  # fmt: skip
    torch.set_num_threads(threads)
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write the checkpoint (PytorchStreamWriter failed" in " ".join(result.stderr.split())
    run = tmp_path / "full"
    assert str(run) in " ".join(result.stderr.split())
    monkeypatch.setattr(torch, "save", real_save)
    last = torch.load(run / "last.pt", weights_only=False)
    assert last["train_state"]["epoch"] == 1
    assert torch.load(run / "best.pt", weights_only=False)["metrics"]["epoch"] == 1
    assert not [p.name for p in run.iterdir() if ".partial-" in p.name]
