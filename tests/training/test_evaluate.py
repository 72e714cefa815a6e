"""Evaluation: the report's numbers on a hand-made probability table, and a real run on crops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FFPP_FACES, need_shared
from deepfake_cli.config import load_config
from deepfake_cli.errors import DatasetError, UsageError
from deepfake_cli.training.evaluate import build_report, evaluate, report_markdown, write_report
from deepfake_cli.labels import MULTICLASS_LABELS

P = [0.1, 0.3, 0.6, 0.2, 0.8, 0.4, 0.9, 0.7]


def _hand_table() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = pd.DataFrame({
        "path": [f"c{i}.jpg" for i in range(8)],
        "label": ["real"] * 4 + ["fake"] * 4,
        "method": ["original"] * 4 + ["Deepfakes", "Deepfakes", "Face2Face", "Face2Face"],
        "video_key": ["v1", "v1", "v2", "v2", "v3", "v3", "v4", "v4"],
    })  # fmt: skip
    probs = np.array([[1 - p, p] for p in P])
    targets = np.array([0] * 4 + [1] * 4)
    return frame, targets, probs


def test_predictions_csv_reproduces_the_report(tmp_path):
    """Near-constant scores (a quick run) differ only past the 6th decimal: the CSV keeps them whole."""
    from deepfake_cli.training.metrics import roc_auc

    rng = np.random.default_rng(0)
    # As a model gives them: a float32 softmax, whose p_fake is not exactly 1 - p_real.
    logits = np.stack([np.zeros(40), 1.7614 + rng.normal(0, 1e-6, 40)], axis=1).astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    assert (1.0 - probs[:, 0] != probs[:, 1]).any()
    frame = pd.DataFrame({"path": [f"c{i}.jpg" for i in range(40)], "label": ["real", "fake"] * 20,
                          "method": ["original", "Deepfakes"] * 20})  # fmt: skip
    targets = np.array([0, 1] * 20)
    threshold = float(np.sort(1.0 - probs[:, 0])[17])
    report = build_report(frame, targets, probs, ["real", "fake"], threshold=threshold)
    write_report(report, tmp_path, frame, probs, ["real", "fake"])
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert ((preds["p_fake"] >= report["threshold"]) == (preds["predicted"] == "fake")).all()
    assert (preds["predicted"] == preds["label"]).mean() == pytest.approx(report["frame"]["accuracy"])
    assert roc_auc(preds["label"] == "fake", preds["p_fake"]) == pytest.approx(report["frame"]["auc"])
    assert list(preds.columns).count("p_fake") == 1 and np.allclose(preds["p_real"] + preds["p_fake"], 1.0, atol=1e-6)


def test_report_numbers_equal_hand_computed_ones(tmp_path):
    frame, targets, probs = _hand_table()
    report = build_report(frame, targets, probs, ["real", "fake"], threshold=0.5)
    fr = report["frame"]
    assert fr["auc"] == pytest.approx(15 / 16)
    assert fr["eer"] == pytest.approx(0.25) and fr["eer_threshold"] == pytest.approx(0.6)
    assert fr["youden_threshold"] == pytest.approx(0.7)
    assert fr["f1"] == pytest.approx(0.75) and fr["accuracy"] == pytest.approx(0.75)
    assert fr["average_precision"] == pytest.approx(0.95)
    assert fr["classes"]["macro_avg"]["f1"] == pytest.approx(0.75)
    assert fr["classes"]["confusion"] == [[3, 1], [1, 3]]
    assert fr["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.7, 0.4, 0.8, 0.8, 0.4, 0.9, 0.7])))
    methods = {r["method"]: r["auc"] for r in report["per_method"]}
    assert methods["Deepfakes"] == pytest.approx(7 / 8) and methods["Face2Face"] == pytest.approx(1.0)
    assert report["video"]["videos"] == 4 and report["video"]["mean"]["auc"] == pytest.approx(1.0)
    assert report["multiclass"] is None

    files = write_report(report, tmp_path, frame, probs, ["real", "fake"])
    for key in ("report_json", "report_md", "predictions", "confusion_csv", "confusion_png", "roc_png", "videos_csv"):
        assert (tmp_path / files[key].rsplit("/", 1)[-1]).is_file(), key
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["frame"]["auc"] == pytest.approx(15 / 16)
    assert pd.read_csv(tmp_path / "confusion.csv", index_col=0).to_numpy().tolist() == [[3, 1], [1, 3]]
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert preds["predicted"].tolist() == ["real", "real", "fake", "real", "fake", "real", "fake", "fake"]
    # How close each crop came to the threshold (0.5): within the default band of 0.1, or 0.6 and 0.4 are not.
    assert preds["margin"].tolist() == pytest.approx([-0.4, -0.2, 0.1, -0.3, 0.3, -0.1, 0.4, 0.2])
    assert not preds["borderline"].any()
    report["borderline_band"] = 0.25
    write_report(report, tmp_path, frame, probs, ["real", "fake"])
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert preds["borderline"].tolist() == [False, True, True, False, False, True, False, True]
    md = (tmp_path / "report.md").read_text()
    assert "| ROC-AUC | 0.9375 |" in md and "| EER | 0.2500 |" in md and "| Face2Face | 2 | 1.0000 |" in md


def test_multiclass_report_has_the_7x7_matrix():
    frame = pd.DataFrame({
        "label": ["real", "fake", "fake", "fake"], "method": ["original", "Deepfakes", "Face2Face", "Face2Face"],
        "video_key": [""] * 4,
    })  # fmt: skip
    targets = np.array([0, 2, 3, 3])
    probs = np.full((4, 7), 0.01)
    for row, cls in enumerate([0, 2, 3, 2]):  # the last Face2Face is called Deepfakes
        probs[row, cls] = 0.94
    report = build_report(frame, targets, probs, MULTICLASS_LABELS, threshold=0.5)
    mc = report["multiclass"]
    assert np.array(mc["confusion"]).shape == (7, 7)
    assert mc["accuracy"] == pytest.approx(3 / 4) and mc["confusion"][3][2] == 1
    assert report["frame"]["accuracy"] == 1.0  # real vs fake all right
    assert report["video"] is None
    assert "Multiclass" in report_markdown({**report, "model": {}, "data": {}})


def test_evaluate_scores_crops_as_predict_does(tmp_path, sepcnn_ckpt):
    need_shared(FFPP_FACES)
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.media.images import load_image
    from deepfake_cli.training.metrics import roc_auc

    model = tmp_path / "model.pt"
    shutil.copy(sepcnn_ckpt, model)
    cfg = load_config(None, {"data.limit_per_class": 6}, environ={})
    report = evaluate(model, cfg, FFPP_FACES, tmp_path / "eval")
    # The fixture was not trained on this data and it has no test split: every crop.
    assert report["data"]["split"] == "all" and report["frame"]["n"] == 12
    preds = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    clf = FaceClassifier.from_checkpoint(model)
    direct = clf.predict_proba([load_image(p) for p in preds["path"]])[:, 1]
    assert np.allclose(preds["p_fake"], direct, atol=1e-6)
    assert report["frame"]["auc"] == pytest.approx(roc_auc(preds["label"] == "fake", direct), abs=1e-6)
    assert report["borderline_band"] == 0.1  # predict.borderline_band, which predictions.csv's borderline uses
    assert (preds["borderline"] == ((preds["p_fake"] - report["threshold"]).abs().round(6) < 0.1)).all()

    # --threshold-from val: refused on 6 crops a class (noise), then chosen on the val
    # carve-out and written into the checkpoint.
    with pytest.raises(UsageError, match="too few validation crops.*6 real and 6 fake"):
        evaluate(model, cfg, FFPP_FACES, tmp_path / "eval2", split="val", threshold_from="val")
    cfg = load_config(None, {"data.limit_per_class": 20}, environ={})
    report = evaluate(model, cfg, FFPP_FACES, tmp_path / "eval2", split="val", threshold_from="val", threshold_method="youden")
    stored = FaceClassifier.from_checkpoint(model)
    assert stored.threshold == pytest.approx(report["threshold"])
    metrics = stored.checkpoint_meta["metrics"]
    assert metrics["threshold_calibration"]["method"] == "youden" == metrics["threshold_method"]
    assert "val_accuracy_at_threshold" not in metrics  # the training run's, at its old threshold
    # The fixture has no training figures: the calibration's threshold-free ones fill them in.
    assert metrics["val_figures_from"] == "evaluate --threshold-from val"
    assert metrics["val_auc"] == pytest.approx(report["frame"]["auc"])
    with pytest.raises(UsageError, match="add --threshold-from val"):
        evaluate(model, cfg, FFPP_FACES, tmp_path / "eval3", threshold_method="youden")


def _folder_dataset(root, n: int = 12, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in ("youtube", "Deepfakes"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_evaluate_knows_a_moved_copy_of_the_training_data(tmp_path, sepcnn_ckpt):
    """A model's training crops, moved or copied elsewhere, still get its val split, not 'all' (its train crops)."""
    from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
    from deepfake_cli.data.datasets import load_splits

    trained_on, moved = tmp_path / "machine_a" / "faces", tmp_path / "machine_b" / "faces"
    _folder_dataset(trained_on)
    cfg = load_config(None, {"data.val_fraction": 0.25}, environ={})
    ckpt = load_checkpoint(sepcnn_ckpt)
    provenance = load_splits(trained_on, val_fraction=0.25, split_seed=0).provenance()
    ckpt["provenance"] = {**(ckpt.get("provenance") or {}), "data": provenance["data"]}
    ckpt["config"] = {**(ckpt.get("config") or {}), "data": {"val_fraction": 0.25, "split_seed": 0}}
    without = save_checkpoint(ckpt, tmp_path / "no_fingerprint.pt")
    ckpt["provenance"]["fingerprint"] = provenance["fingerprint"]
    model = save_checkpoint(ckpt, tmp_path / "model.pt")
    shutil.copytree(trained_on, moved)
    shutil.rmtree(trained_on)

    report = evaluate(model, cfg, moved, tmp_path / "eval")
    assert report["data"]["split"] == "val"
    val = load_splits(moved, val_fraction=0.25, split_seed=0)["val"]
    assert report["frame"]["n"] == len(val) == 6
    # Without a fingerprint (older checkpoints) only the path tells, and a moved copy is scored whole.
    assert evaluate(without, cfg, moved, tmp_path / "eval2")["data"]["split"] == "all"
    # Other crops at the recorded place are not the training data either.
    (moved / "youtube" / "0.png").rename(tmp_path / "0.png")
    assert evaluate(model, cfg, moved, tmp_path / "eval3")["data"]["split"] == "all"
    # Crops changed where the model was trained: still its split, with a warning.
    shutil.copytree(moved, trained_on)
    report = evaluate(model, cfg, trained_on, tmp_path / "eval4")
    assert report["data"]["split"] == "val" and "changed since training" in report["data"]["split_reason"]
    shutil.copy(tmp_path / "0.png", trained_on / "youtube" / "0.png")
    report = evaluate(model, cfg, trained_on, tmp_path / "eval5")
    assert report["data"]["split"] == "val" and "changed" not in report["data"]["split_reason"]


def test_evaluate_leaves_out_training_crops_found_anywhere(tmp_path, sepcnn_ckpt):
    """Training crops copied into another folder (under other names) are known by content, not scored as unseen."""
    from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
    from deepfake_cli.data.datasets import crop_digests, load_splits

    trained_on, sample = tmp_path / "faces", tmp_path / "sample"
    _folder_dataset(trained_on)
    train = load_splits(trained_on, val_fraction=0.25, split_seed=0)
    ckpt = load_checkpoint(sepcnn_ckpt)
    ckpt["train_crop_digests"] = torch.from_numpy(train.train_digests)
    model = save_checkpoint(ckpt, tmp_path / "model.pt")
    assert len(train.train_digests) == len(train["train"]) == 18
    # A sample of 4 training crops (renamed) and 2 validation crops, plus 4 crops never seen.
    train_paths, val_paths = train["train"].paths, train["val"].paths
    _folder_dataset(sample, n=2, seed=1)
    for k, src in enumerate([p for p in train_paths if "youtube" in p][:2] + [p for p in train_paths if "Deepfakes" in p][:2]):
        cls = "youtube" if "youtube" in src else "Deepfakes"
        shutil.copy(src, sample / cls / f"copied_{k}.png")
    for k, src in enumerate(val_paths[:2]):
        cls = "youtube" if "youtube" in src else "Deepfakes"
        shutil.copy(src, sample / cls / f"val_{k}.png")
    cfg = load_config(None, {}, environ={})
    report = evaluate(model, cfg, sample, tmp_path / "eval")
    assert report["data"]["split"] == "all" and report["frame"]["n"] == 6
    assert report["data"]["split_reason"] == (
        "no test split, and not the model's training set, though 4 of its 10 crops were used to train it: every other crop"
    )
    scored = pd.read_csv(tmp_path / "eval" / "predictions.csv")["path"]
    assert not any("copied_" in p for p in scored) and sum("val_" in p for p in scored) == 2
    assert not np.isin(crop_digests(list(scored)), train.train_digests).any()
    # Asked for explicitly, the split is scored whole, and the report says how much of it is training data.
    report = evaluate(model, cfg, sample, tmp_path / "eval2", split="all")
    assert report["frame"]["n"] == 10 and "figures are optimistic" in report["data"]["split_reason"]
    # Nothing but training crops: nothing honest to score.
    only = tmp_path / "only_train"
    (only / "youtube").mkdir(parents=True)
    (only / "Deepfakes").mkdir()
    for src in train_paths[:3] + train_paths[-3:]:
        shutil.copy(src, only / Path(src).parent.name / Path(src).name)
    with pytest.raises(DatasetError, match="every crop of the all split was used to train"):
        evaluate(model, cfg, only, tmp_path / "eval3")


def test_threshold_calibration_never_rewrites_a_shipped_model(tmp_path):
    from deepfake_cli.models.store import is_packaged_model, resolve_model

    shipped = resolve_model(None)
    assert is_packaged_model(shipped) and not is_packaged_model(tmp_path / "copy.pt")
    before = shipped.read_bytes()
    cfg = load_config(None, {}, environ={})
    with pytest.raises(UsageError, match="ships with dfdetect.*calibrate a copy"):
        evaluate(shipped, cfg, tmp_path, tmp_path / "eval", threshold_from="val")
    assert shipped.read_bytes() == before and not (tmp_path / "eval").exists()


def test_unwritable_report_folder_fails_before_scoring(tmp_path, sepcnn_ckpt):
    from deepfake_cli.errors import OutputError

    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match="cannot make this folder"):
        evaluate(sepcnn_ckpt, load_config(None, {}, environ={}), tmp_path / "nodata", tmp_path / "file.txt" / "out")


def test_crops_framed_otherwise_than_the_model_learnt_are_flagged(tmp_path, sepcnn_ckpt):
    """A margin-0 model scored on margin-0.3 crops (extract's default) says so in the log and the report."""
    from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint

    _folder_dataset(tmp_path / "faces")
    rows = [{"path": str(p.relative_to(tmp_path / "faces")), "label": "real" if p.parent.name == "youtube" else "fake",
             "method": "original" if p.parent.name == "youtube" else "Deepfakes",
             "split": "test" if int(p.stem) % 2 else "train"}
            for p in sorted((tmp_path / "faces").rglob("*.png"))]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "faces" / "metadata.csv", index=False)
    (tmp_path / "faces" / "dataset.json").write_text(json.dumps({"face": {"detector": "mtcnn", "margin": 0.3, "square": True}}))
    ckpt = load_checkpoint(sepcnn_ckpt)
    ckpt["preprocessing"]["face"] = {"detector": "mtcnn", "margin": 0.0, "square": True}
    model = save_checkpoint(ckpt, tmp_path / "margin0.pt")
    said: list[str] = []
    report = evaluate(model, load_config(None, {}, environ={}), tmp_path / "faces", tmp_path / "eval", message=said.append)
    note = report["data"]["framing_note"]
    assert note and "margin 0.3" in note and "margin 0" in note and any(note in line for line in said)
    # Same framing: nothing to say.
    ckpt["preprocessing"]["face"] = {"detector": "mtcnn", "margin": 0.3, "square": True}
    same = save_checkpoint(ckpt, tmp_path / "margin03.pt")
    assert evaluate(same, load_config(None, {}, environ={}), tmp_path / "faces", tmp_path / "eval2")["data"]["framing_note"] is None


def test_evaluate_re_makes_the_look_alike_carve_out_a_model_was_trained_with(tmp_path, sepcnn_ckpt):
    """A checkpoint trained with look-alike groups gets that val split back; one from before gets its crop-by-crop one."""
    from conftest import make_lookalike_folders
    from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
    from deepfake_cli.data.datasets import load_splits

    root = make_lookalike_folders(tmp_path / "faces", people=20)
    cfg = load_config(None, {}, environ={})
    assert cfg.data.group_lookalikes  # new runs group look-alikes
    ckpt = load_checkpoint(sepcnn_ckpt)
    grouped = load_splits(root, val_fraction=0.3, split_seed=0, group_lookalikes=True)
    plain = load_splits(root, val_fraction=0.3, split_seed=0)
    assert set(grouped["val"].paths) != set(plain["val"].paths)
    for name, data_config, expected in (
        ("grouped", {"val_fraction": 0.3, "split_seed": 0, "group_lookalikes": True}, grouped),
        ("older", {"val_fraction": 0.3, "split_seed": 0}, plain),
    ):
        ckpt["provenance"] = {**(ckpt.get("provenance") or {}), "data": str(root.resolve()), "fingerprint": grouped.fingerprint}
        ckpt["config"] = {**(ckpt.get("config") or {}), "data": data_config}
        report = evaluate(save_checkpoint(ckpt, tmp_path / f"{name}.pt"), cfg, root, tmp_path / f"eval_{name}")
        assert report["data"]["split"] == "val"
        assert report["frame"]["n"] == len(expected["val"]), name


def test_data_the_model_never_saw_is_grouped_only_when_a_carved_split_is_scored(tmp_path, sepcnn_ckpt):
    """Scoring foreign crops whole skips the look-alike search; asking for its val split does not."""
    from conftest import make_lookalike_folders

    root = make_lookalike_folders(tmp_path / "faces", people=20)
    cfg = load_config(None, {}, environ={})
    whole = evaluate(sepcnn_ckpt, cfg, root, tmp_path / "eval_all")
    assert whole["data"]["split"] == "all" and whole["data"]["settings"]["group_lookalikes"] is False
    val = evaluate(sepcnn_ckpt, cfg, root, tmp_path / "eval_val", split="val")
    assert val["data"]["settings"]["group_lookalikes"] is True


def test_a_new_threshold_drops_the_training_runs_figures_at_the_old_one(tmp_path, sepcnn_ckpt):
    from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
    from deepfake_cli.training.evaluate import update_checkpoint_threshold

    ckpt = load_checkpoint(sepcnn_ckpt)
    ckpt["metrics"] = {
        "val_auc": 0.9, "threshold": 0.5, "val_accuracy_at_threshold": 0.8,
        "val_datasets_at_threshold": {"a": {"accuracy": 0.8}}, "val_datasets": {"a": {"auc": 0.9}},
    }  # fmt: skip
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    update_checkpoint_threshold(path, 0.3, {"method": "eer"}, val_figures={"val_auc": 0.1})
    metrics = load_checkpoint(path)["metrics"]
    assert metrics["threshold"] == 0.3 and metrics["threshold_method"] == "eer"
    assert "val_accuracy_at_threshold" not in metrics and "val_datasets_at_threshold" not in metrics
    # Threshold-free figures of the training run stay (the calibration's do not replace them).
    assert metrics["val_auc"] == 0.9 and metrics["val_datasets"] == {"a": {"auc": 0.9}}
