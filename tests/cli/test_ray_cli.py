"""``--ray`` on predict, video and extract: the same output as a local run, on one local
Ray cluster with 2 CPUs started for this module (skipped when Ray is not installed, i.e.
without ``dfdetect[ray]``, or when ../shared is absent)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FFPP_C23, PHOTOS, REPO, SHARED, need_shared
from deepfake_cli.cli.app import app

runner = CliRunner()
PHOTO_ROOT = SHARED / "data" / "photos"  # faces/ and mesonet/{df,real}: 8 photos, one with 6 faces
VIDEOS = [
    FFPP_C23 / "original_sequences" / "youtube" / "c23" / "videos" / "004.mp4",
    FFPP_C23 / "manipulated_sequences" / "NeuralTextures" / "c23" / "videos" / "004_982.mp4",
]
# Fields that measure time, not results.
TIMING = ("timings", "sampled_fps")
EXTRACT_FAST = ["--frames-per-video", "1", "--detect-max-side", "320"]


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed (pip install 'dfdetect[ray]')")
    need_shared(PHOTO_ROOT, *VIDEOS)
    # Workers import this checkout's deepfake_cli, whatever the installed one is.
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([before] if before else []))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def jsonl(text: str) -> list[dict]:
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for record in records:
        for key in TIMING:
            record.pop(key, None)
    return records


def rounded(value, places=4):
    """``value`` with every float rounded to ``places`` decimals."""
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {k: rounded(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, places) for v in value]
    return value


def test_predict_ray_gives_the_local_records_in_order(ray_cluster, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image\n")
    # -b 2: several tasks, spread over both actors; the broken file is an error row on both.
    args = ["predict", str(PHOTO_ROOT), str(broken), "--jsonl", "-b", "2"]
    local = runner.invoke(app, args)
    on_ray = runner.invoke(app, args + ["--ray"])
    assert local.exit_code == on_ray.exit_code == 4, (local.output, on_ray.output)
    assert "2 Ray actor(s)" in on_ray.stderr
    records = jsonl(on_ray.stdout)
    # Actors run torch on their own thread count: scores may differ in the 6th decimal.
    assert rounded(records) == rounded(jsonl(local.stdout))
    assert len(records) == 9 and records[-1]["status"] == "error"
    assert [r["path"] for r in records] == sorted(str(p) for p in PHOTO_ROOT.rglob("*.jpg")) + [str(broken)]


def test_predict_ray_refuses_more_actors_than_the_cluster_holds(ray_cluster):
    result = runner.invoke(app, ["predict", str(PHOTOS), "--ray", "--ray-actors", "5"])
    assert result.exit_code == 1
    assert "--ray-actors 5 needs 5 CPUs" in result.stderr and "Traceback" not in result.output


def test_video_ray_gives_the_local_summaries_and_rows(ray_cluster, sepcnn_ckpt, tmp_path):
    missing = tmp_path / "missing.mp4"
    common = ["video", *map(str, VIDEOS), str(missing), "-m", str(sepcnn_ckpt), "--frames", "3", "--jsonl"]
    local = runner.invoke(app, common + ["-o", str(tmp_path / "local.csv")])
    on_ray = runner.invoke(app, common + ["-o", str(tmp_path / "ray.csv"), "--ray"])
    assert local.exit_code == on_ray.exit_code == 4, (local.output, on_ray.output)
    summaries = jsonl(on_ray.stdout)
    assert summaries == jsonl(local.stdout)
    assert [s["status"] for s in summaries] == ["ok", "ok", "error"]
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the resolved config, which records --ray) with its hash."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "config.json"
    }  # fmt: skip


class _KillAfterFirstVideo:
    """Progress that kills every Ray actor of the run once the first video is written."""

    def __init__(self, ray, runner_):
        self.ray, self.runner, self.done = ray, runner_, []

    def start(self, total: int, resumed: int) -> None:
        pass

    def video_done(self, result) -> None:
        if not self.done:
            for actor in list(self.runner.pool.actors):
                self.ray.kill(actor, no_restart=True)
        self.done.append(result)


def test_extract_ray_matches_local_and_resumes_after_killed_workers(ray_cluster, tmp_path):
    from deepfake_cli.config import load_config
    from deepfake_cli.cluster.ray_pool import ExtractRunner
    from deepfake_cli.data.extract import run_extract

    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    local = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(local_out), *EXTRACT_FAST])
    assert local.exit_code == 0, local.output

    # A first run whose actors are killed after one video: the videos in flight become
    # error rows (never a silent gap), the others are done by a fresh actor.
    cfg = load_config(None, {"data.frames_per_video": 1, "data.detect_max_side": 320, "ray.enabled": True}, environ={})
    with ExtractRunner(cfg) as videos:
        progress = _KillAfterFirstVideo(ray_cluster, videos)
        first = run_extract(cfg, ray_out, root=FFPP_C23, progress=progress, videos_runner=videos)
    assert first.videos == 4 and first.processed == 4 and first.errors >= 1
    with open(ray_out / "errors.csv", newline="", encoding="utf-8") as fh:
        errors = list(csv.DictReader(fh))
    assert len(errors) == first.errors and all("Ray worker died" in e["reason"] for e in errors)
    done = [r.video for r in progress.done if r.status == "ok"]
    assert sorted(done + [e["video"] for e in errors]) == sorted(r.video for r in progress.done)
    assert len(progress.done) == 4

    # The rerun (the CLI, as a user would) does the failed videos only, and ends as the local run.
    rerun = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(ray_out), *EXTRACT_FAST, "--ray"])
    assert rerun.exit_code == 0, rerun.output
    assert f"({len(done)} done earlier)" in rerun.stderr
    assert tree(ray_out) == tree(local_out)
    with open(ray_out / "metadata.csv", newline="", encoding="utf-8") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    assert len(paths) == len(set(paths)) == 4


def test_missing_ray_is_one_clear_line(tmp_path, monkeypatch):
    need_shared(PHOTOS)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if dfdetect[ray] were not installed
    result = runner.invoke(app, ["predict", str(PHOTOS / "kate_siegel.jpg"), "--ray"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --ray needs Ray: pip install 'dfdetect[ray]'"


def test_the_cli_does_not_import_ray_without_the_flag():
    code = (
        "import sys, typer; from deepfake_cli.cli.app import app; typer.main.get_command(app); "
        "import deepfake_cli.cli.predict_cmd, deepfake_cli.cli.video_cmd, deepfake_cli.cli.extract_cmd; "
        "print('ray' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_a_worker_process_killed_mid_run_is_restarted_and_its_task_retried(ray_cluster, monkeypatch):
    """kill -9 of every actor's process (as the OOM killer would) after the first task:
    Ray restarts them and runs their tasks again; the records are still the local ones."""
    import signal

    from deepfake_cli.cluster import ray_pool as distributed_ray
    from deepfake_cli.config import load_config
    from deepfake_cli.inference.pipeline import FacePipeline
    from deepfake_cli.inference.video import predict_paths

    ordered = distributed_ray.WorkerPool.ordered
    killed: list[int] = []

    def kill_after_first(self, method, tasks, lost):
        for i, item in enumerate(ordered(self, method, tasks, lost)):
            if i == 0:
                for info in ray_cluster.get([a.info.remote() for a in self.actors]):
                    os.kill(info["pid"], signal.SIGKILL)
                    killed.append(info["pid"])
            yield item

    monkeypatch.setattr(distributed_ray.WorkerPool, "ordered", kill_after_first)
    paths = sorted(PHOTOS.glob("*.jpg"))
    cfg = load_config(None, {"predict.batch_size": 1, "ray.enabled": True}, environ={})
    on_ray = list(distributed_ray.predict_records(paths, cfg))
    assert len(killed) == 2
    from deepfake_cli.cli.common import load_classifier

    local = list(predict_paths(paths, FacePipeline.from_config(load_classifier(cfg), cfg), cfg))
    assert on_ray == local and all(r["status"] == "ok" for r in on_ray)


def test_a_dfdetect_process_joins_a_running_cluster_by_address(ray_cluster):
    """``--ray-address`` from another process: the cluster is joined (not started), the
    records are the local ones, and the cluster is still up afterwards."""
    address = ray_cluster.get_runtime_context().gcs_address
    args = ["predict", str(PHOTOS), "--jsonl"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    joined = subprocess.run([sys.executable, "-m", "deepfake_cli", *args, "--ray-address", address],
                            capture_output=True, text=True, env=env, timeout=120)
    assert joined.returncode == 0, joined.stderr
    assert f"on the Ray cluster at {address}" in joined.stderr
    assert jsonl(joined.stdout) == jsonl(runner.invoke(app, args).stdout)
    assert ray_cluster.cluster_resources().get("CPU") == 2
