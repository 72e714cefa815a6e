"""Training on a small real subset of ../shared/data/ffpp_faces: learning, reloading, exact resume, DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DFDC_FACES, FFPP_FACES, REPO, need_shared
from deepfake_cli.models.checkpoint import load_checkpoint
from deepfake_cli.config import load_config
from deepfake_cli.labels import MULTICLASS_LABELS
from deepfake_cli.training.train import TrainReporter, config_for_resume, train


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(tmp_path: Path, **overrides):
    need_shared(FFPP_FACES)
    base = {
        "data.root": str(FFPP_FACES),
        "model.arch": "sepcnn",
        "train.input_size": 64,
        "train.epochs": 3,
        "train.batch_size": 32,
        "train.lr": 3e-3,
        "train.augment": "none",
        "train.workers": 0,
        "train.out_dir": str(tmp_path / "runs"),
        "data.limit_per_class": 64,
        "face.margin": 0.0,
        "runtime.num_threads": 1,
    }
    return load_config(None, {**base, **overrides}, environ={})


def test_training_learns_and_best_pt_reloads(tmp_path):
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.media.images import load_image

    result = train(_cfg(tmp_path))
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.05, losses
    run = result.run_dir
    assert run == tmp_path / "runs" / "exp"
    for name in ("best.pt", "last.pt", "config.json", "metrics.jsonl", "curves.png"):
        assert (run / name).is_file(), name
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3] and all(l["val_auc"] is not None for l in lines)
    assert json.loads((run / "config.json").read_text())["model"]["arch"] == "sepcnn"

    clf = FaceClassifier.from_checkpoint(result.best)
    assert clf.input_size == 64 and clf.labels == ["real", "fake"]
    assert clf.framing.margin == 0.0 and clf.framing.square is True
    best = load_checkpoint(result.best)
    assert best["metrics"]["epoch"] == result.best_epoch
    assert best["metrics"]["val_auc"] == pytest.approx(max(l["val_auc"] for l in lines))
    assert best["metrics"]["threshold_method"] == "eer" and 0.0 < clf.threshold <= 1.0
    assert best["provenance"]["splits"]["train"]["crops"] == 128
    # evaluate knows the training crops by content: one digest per crop trained on.
    digests = best["train_crop_digests"].numpy()
    assert digests.dtype == np.int64 and len(digests) == 128 and (np.diff(digests) > 0).all()
    assert "train_state" not in best
    scores = clf.score([load_image(p) for p in sorted((FFPP_FACES / "youtube").glob("*.jpg"))[:3]])
    assert len(scores) == 3 and all(0.0 <= s.p_fake <= 1.0 for s in scores)
    # A second run with the same name gets the next number.
    assert train(_cfg(tmp_path, **{"train.epochs": 1, "data.limit_per_class": 8})).run_dir.name == "exp2"


class _Interrupt(Exception):
    pass


class _StopAfterFirstEpoch(TrainReporter):
    def epoch_end(self, record):
        if record["epoch"] == 1:
            raise _Interrupt  # as if killed right after last.pt of epoch 1 was written


def test_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = {
        "model.arch": "sepcnn", "train.input_size": 48, "train.epochs": 2, "train.batch_size": 16,
        "data.limit_per_class": 32, "train.augment": "strong", "train.optimizer": "adamw", "train.scheduler": "cosine",
        "train.warmup_epochs": 0.5, "train.label_smoothing": 0.1, "train.workers": 1, "runtime.seed": 3,
    }  # fmt: skip
    full = train(_cfg(tmp_path, **overrides, **{"train.name": "full"}))
    with pytest.raises(_Interrupt):
        train(_cfg(tmp_path, **overrides, **{"train.name": "cut"}), reporter=_StopAfterFirstEpoch())
    last = tmp_path / "runs" / "cut" / "last.pt"
    state = load_checkpoint(last)["train_state"]  # weights_only=True load of optimizer/scheduler/RNG state
    assert state["epoch"] == 1 and isinstance(state["rng"]["torch"], torch.Tensor)
    resumed = train(config_for_resume(last), resume=last)
    assert resumed.run_dir == last.parent
    a, b = load_checkpoint(full.last), load_checkpoint(resumed.last)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert len((last.parent / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_refuses_changed_options(tmp_path):
    from deepfake_cli.errors import CheckpointError, UsageError

    result = train(_cfg(tmp_path, **{"train.epochs": 1, "data.limit_per_class": 8}))
    with pytest.raises(UsageError, match="only train.epochs"):
        config_for_resume(result.last, {"train.lr": 0.1})
    assert config_for_resume(result.last, {"train.epochs": 5}).train.epochs == 5
    # A finished run (or fewer epochs than it has done) leaves nothing to train.
    with pytest.raises(UsageError, match=r"trained through epoch 1 \(--epochs 1\); pass --epochs above 1"):
        config_for_resume(result.last)
    with pytest.raises(CheckpointError, match="no training state"):
        config_for_resume(result.best)


def test_multiclass_head_only_phase_keeps_the_backbone(tmp_path):
    """--freeze-epochs: the first phase trains the head alone (backbone and its BN statistics untouched)."""
    from deepfake_cli.models import create_model
    from deepfake_cli.runtime import seed_everything

    class Messages(TrainReporter):
        said: list[str] = []

        def message(self, text: str) -> None:
            self.said.append(text)

    cfg = _cfg(tmp_path, **{"data.task": "multiclass", "train.epochs": 1, "train.freeze_epochs": 1, "data.limit_per_class": 8, "runtime.seed": 5})
    result = train(cfg, reporter=Messages())
    # The shared crops hold 4 of FF++'s 6 methods: the 7-class head has two classes nothing teaches.
    assert any("no training crops for DeepFakeDetection, FaceShifter" in m for m in Messages.said), Messages.said
    ckpt = load_checkpoint(result.last)
    assert ckpt["labels"] == list(MULTICLASS_LABELS) and ckpt["model_args"]["num_classes"] == 7
    seed_everything(5)
    fresh = create_model("sepcnn", num_classes=7).state_dict()
    for key, value in ckpt["state_dict"].items():
        if key.startswith("classifier."):
            if key.endswith("weight"):
                assert not torch.equal(value, fresh[key]), key
        else:
            assert torch.equal(value, fresh[key]), key


def test_ddp_with_two_gloo_processes(tmp_path):
    need_shared(FFPP_FACES)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DFDETECT_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "deepfake_cli", "train", "--data", str(FFPP_FACES), "--arch", "sepcnn", "--input-size", "32",
        "--epochs", "1", "--limit-per-class", "20", "-b", "8", "--workers", "0", "--project", str(tmp_path / "runs"),
        "--device", "cpu", "--json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # rank 0 alone prints
    ckpt = load_checkpoint(summary["best"])
    assert ckpt["provenance"]["world_size"] == 2
    # 40 training crops over 2 ranks x 3 batches of 8 (20 each, in 3 steps): every crop seen once.
    assert summary["final"]["train_images"] == 40
    assert summary["final"]["val_auc"] is not None
    assert list(Path(summary["run_dir"]).glob("*.pt")) and Path(summary["run_dir"]).name == "exp"


def test_extracted_metadata_records_its_framing_and_evaluates_on_test(tmp_path):
    """A metadata.csv + dataset.json as dfdetect extract writes them (paths may be absolute)."""
    import pandas as pd

    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.training.evaluate import evaluate

    need_shared(FFPP_FACES)
    rows = []
    for method in ("youtube", "Deepfakes", "FaceSwap"):
        for i, path in enumerate(sorted((FFPP_FACES / method).glob("*.jpg"))[:18]):
            video = f"{i // 3:03d}"  # 3 crops per "video", 6 videos per method
            rows.append({
                "path": str(path), "label": "real" if method == "youtube" else "fake",
                "method": "original" if method == "youtube" else method,
                "split": ("train", "train", "train", "train", "val", "test")[i // 3],
                "video": f"{method}/{video}.mp4", "video_id": video, "group": f"ff:{video}", "frame": i % 3,
            })  # fmt: skip
    data = tmp_path / "crops"
    data.mkdir()
    pd.DataFrame(rows).to_csv(data / "metadata.csv", index=False)
    (data / "dataset.json").write_text(json.dumps({"face": {"detector": "mtcnn", "margin": 0.25, "square": False}}))

    result = train(_cfg(tmp_path, **{"data.root": str(data), "data.limit_per_class": None, "train.epochs": 1,
                                     "train.input_size": 32, "face.margin": None}))  # fmt: skip
    clf = FaceClassifier.from_checkpoint(result.best)
    assert (clf.framing.margin, clf.framing.square) == (0.25, False)
    prov = load_checkpoint(result.best)["provenance"]
    assert prov["source"] == "metadata" and not prov["carved_val"] and prov["splits"]["test"]["crops"] == 9
    assert prov["splits"]["train"]["crops"] == 36 and prov["splits"]["val"]["crops"] == 9

    report = evaluate(result.best, load_config(None, {}, environ={}), data / "metadata.csv", tmp_path / "eval")
    assert report["data"]["split"] == "test" and report["frame"]["n"] == 9
    assert report["video"]["videos"] == 3 and report["video"]["confident"]["auc"] is not None
    assert (tmp_path / "eval" / "videos.csv").is_file()


def test_init_starts_from_a_checkpoints_weights_and_records_it(tmp_path):
    """--init: fine-tuning from imported MesoNet weights keeps their preprocessing and provenance;
    another architecture is refused; other labels give a fresh head."""
    from conftest import MESONET_WEIGHTS
    from deepfake_cli.models.checkpoint import save_checkpoint
    from deepfake_cli.errors import UsageError
    from deepfake_cli.models.import_keras import import_mesonet

    need_shared(MESONET_WEIGHTS / "Meso4_F2F.h5")
    init = import_mesonet(MESONET_WEIGHTS / "Meso4_F2F.h5")
    init_path = tmp_path / "meso4_f2f.pt"
    save_checkpoint(init, init_path)
    # A negligible lr: the weights stay the init's, so the copy itself is checked.
    cfg = _cfg(tmp_path, **{"model.arch": "mesonet4", "model.init": str(init_path), "train.input_size": None,
                            "train.epochs": 1, "train.lr": 1e-12, "train.max_steps_per_epoch": 1})
    result = train(cfg)
    best = load_checkpoint(result.best)
    assert best["preprocessing"]["input_size"] == 256 and best["preprocessing"]["std"] == [1.0, 1.0, 1.0]
    for name, tensor in init["state_dict"].items():
        if "running" not in name and "num_batches" not in name:  # BatchNorm statistics move in train mode
            assert torch.allclose(best["state_dict"][name], tensor, atol=1e-6), name
    recorded = best["provenance"]["init"]
    assert recorded["path"] == str(init_path) and len(recorded["sha256"]) == 64 and recorded["fresh_tensors"] == []
    assert recorded["provenance"]["license"].startswith("Apache-2.0") and best["provenance"]["pretrained"] is False

    with pytest.raises(UsageError, match="holds a mesonet4 model"):
        train(_cfg(tmp_path, **{"model.init": str(init_path)}))

    multiclass = _cfg(tmp_path, **{"model.arch": "mesonet4", "model.init": str(init_path), "train.input_size": None,
                                   "data.task": "multiclass", "train.epochs": 1, "train.lr": 1e-12,
                                   "train.max_steps_per_epoch": 1})
    fresh = load_checkpoint(train(multiclass).best)["provenance"]["init"]["fresh_tensors"]
    assert fresh and all(name.startswith(fresh[0].split(".")[0]) for name in fresh)


def test_two_real_datasets_report_per_dataset_validation(tmp_path):
    """FF++ and DFDC crops at once: each split on its own, drawn in shares, validated apart."""
    need_shared(FFPP_FACES, DFDC_FACES)
    cfg = _cfg(tmp_path, **{
        "data.root": [str(FFPP_FACES), str(DFDC_FACES)], "train.epochs": 2, "data.limit_per_class": 48,
        "train.dataset_weights": [1.0, 1.0], "train.select_metric": "auc_mean", "face.square": True,
    })  # fmt: skip
    result = train(cfg)
    lines = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    for line in lines:
        per = line["val_datasets"]
        assert list(per) == ["ffpp_faces", "dfdc_faces"]
        assert all(0.0 <= per[n]["auc"] <= 1.0 and per[n]["crops"] > 0 for n in per)
        assert line["val_auc_mean"] == pytest.approx((per["ffpp_faces"]["auc"] + per["dfdc_faces"]["auc"]) / 2)
        assert sum(per[n]["crops"] for n in per) == load_checkpoint(result.last)["provenance"]["splits"]["val"]["crops"]
    best = load_checkpoint(result.best)
    assert best["metrics"]["select_metric"] == "auc_mean"
    assert set(best["metrics"]["val_datasets"]) == {"ffpp_faces", "dfdc_faces"}
    assert set(best["metrics"]["val_datasets_at_threshold"]) == {"ffpp_faces", "dfdc_faces"}
    prov = best["provenance"]
    assert set(prov["datasets"]) == {"ffpp_faces", "dfdc_faces"}
    train_counts = prov["splits"]["train"]["datasets"]
    assert set(train_counts) == {"ffpp_faces", "dfdc_faces"} and all(n > 0 for n in train_counts.values())
    # Equal shares: each dataset gives half of an epoch's draws, whatever its size.
    assert (result.run_dir / "curves.png").stat().st_size > 0
    assert best["preprocessing"]["face"]["margin"] == 0.0 and best["preprocessing"]["face"]["square"] is True

    # evaluate: both datasets at once report each one; either alone is its own validation split.
    from deepfake_cli.training.evaluate import evaluate

    cfg = cfg.replace({"data.limit_per_class": 20})  # 20 real + 20 fake of each dataset's val split
    report = evaluate(result.best, cfg, [str(FFPP_FACES), str(DFDC_FACES)], tmp_path / "ev")
    assert report["data"]["split"] == "val"
    per = {row["dataset"]: row for row in report["per_dataset"]}
    assert list(per) == ["ffpp_faces", "dfdc_faces"]
    assert all(per[n]["reals"] == per[n]["fakes"] == 20 and 0 <= per[n]["auc"] <= 1 for n in per)
    assert "## Per dataset" in (tmp_path / "ev" / "report.md").read_text()
    alone = evaluate(result.best, cfg, str(DFDC_FACES), tmp_path / "ev_dfdc")
    assert alone["data"]["split"] == "val" and alone["per_dataset"] is None
    assert alone["frame"]["auc"] == pytest.approx(per["dfdc_faces"]["auc"])


def test_dataset_weights_must_match_the_datasets(tmp_path):
    from deepfake_cli.errors import UsageError

    need_shared(FFPP_FACES)
    with pytest.raises(UsageError, match="1 dataset"):
        train(_cfg(tmp_path, **{"train.dataset_weights": [1.0, 2.0], "train.epochs": 1, "data.limit_per_class": 8}))


def _copy_crops(src: Path, dst: Path, per_folder: dict[str, int]) -> Path:
    import shutil

    for folder, n in per_folder.items():
        (dst / folder).mkdir(parents=True)
        for f in sorted((src / folder).glob("*.jpg"))[:n]:
            shutil.copy(f, dst / folder / f.name)
    return dst


def test_balance_classes_splits_each_datasets_draws_evenly_over_its_classes(tmp_path):
    """The FF++ copy here holds four fakes per real: balanced, an epoch draws its reals as often as its fakes,
    so "looks like FF++" says nothing about the label; the datasets' shares stay as weighted."""
    from deepfake_cli.training.distributed import distributed
    from deepfake_cli.training.train import Trainer

    need_shared(FFPP_FACES, DFDC_FACES)
    methods = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
    ffpp = _copy_crops(FFPP_FACES, tmp_path / "ffpp", {"youtube": 12, **{m: 12 for m in methods}})
    dfdc = _copy_crops(DFDC_FACES, tmp_path / "dfdc", {"real": 30, "fake": 30})
    drawn = {}
    for balance in (False, True):
        cfg = _cfg(tmp_path, **{
            "data.root": [str(ffpp), str(dfdc)], "data.limit_per_class": None, "face.square": True,
            "train.dataset_weights": [1.0, 2.0], "train.balance_classes": balance, "train.epochs": 1,
            "data.group_lookalikes": False, "data.val_fraction": 0.2,
        })  # fmt: skip
        with distributed(torch.device("cpu")) as ctx:
            trainer = Trainer(cfg, torch.device("cpu"), ctx)
        split = trainer.train_split
        datasets = split.frame["dataset"].to_numpy()
        counts = {(d, c): 0 for d in ("ffpp", "dfdc") for c in (0, 1)}
        for _, _, indices in trainer.sampler:
            for i in indices:
                counts[(datasets[i], int(split.targets[i]))] += 1
        drawn[balance] = (counts, trainer.class_weights)
    plain, plain_weights = drawn[False]
    assert plain[("ffpp", 1)] > 2.5 * plain[("ffpp", 0)]  # FF++'s own ratio: mostly fakes
    assert plain_weights[0] > 1.05  # global class weights: reals count a little more, FF++ or not
    counts, weights = drawn[True]
    assert abs(counts[("ffpp", 0)] - counts[("ffpp", 1)]) <= 1
    assert abs(counts[("dfdc", 0)] - counts[("dfdc", 1)]) <= 1
    ffpp_draws, dfdc_draws = counts[("ffpp", 0)] + counts[("ffpp", 1)], counts[("dfdc", 0)] + counts[("dfdc", 1)]
    assert dfdc_draws == pytest.approx(2 * ffpp_draws, abs=2)
    assert ffpp_draws + dfdc_draws == sum(plain.values())  # an epoch is as long as before
    assert weights == pytest.approx([1.0, 1.0], abs=0.02)  # balanced draws need no class weights


def test_balance_classes_with_one_dataset_says_what_an_epoch_draws(tmp_path):
    """One dataset has no draws per dataset to show: the log gives the draws per class instead."""
    from deepfake_cli.training.distributed import distributed
    from deepfake_cli.training.train import Trainer

    class Messages(TrainReporter):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    need_shared(FFPP_FACES)
    methods = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
    ffpp = _copy_crops(FFPP_FACES, tmp_path / "ffpp", {"youtube": 10, **{m: 10 for m in methods}})
    cfg = _cfg(tmp_path, **{
        "data.root": [str(ffpp)], "data.limit_per_class": None, "train.balance_classes": True, "train.epochs": 1,
        "data.group_lookalikes": False, "data.val_fraction": 0.2,
    })  # fmt: skip
    reporter = Messages()
    with distributed(torch.device("cpu")) as ctx:
        trainer = Trainer(cfg, torch.device("cpu"), ctx, reporter=reporter)
    line = next(t for t in reporter.lines if t.startswith(cfg.model.arch))
    real, fake = (int(n) for n in re.search(r"split evenly over its classes: real (\d+), fake (\d+)\)", line).groups())
    assert abs(real - fake) <= 1 and real + fake == len(trainer.train_split)
    # ...and that is what the sampler draws.
    drawn = np.bincount([int(trainer.train_split.targets[i]) for _, _, idx in trainer.sampler for i in idx], minlength=2)
    assert drawn.tolist() == [real, fake]
