"""``dfdetect serve`` as a real server process on a free loopback port, called over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from typer.testing import CliRunner

from conftest import MESONET_PHOTOS, PHOTOS, need_shared
from deepfake_cli.cli.app import app
from deepfake_cli.serve.local import LocalServer, require_loopback

runner = CliRunner()


def test_real_server_answers_over_http_and_stops_cleanly(sepcnn_ckpt, tmp_path):
    need_shared(PHOTOS, MESONET_PHOTOS)
    photos = [PHOTOS / "multiface.jpg", *sorted(MESONET_PHOTOS.glob("*/*.jpg"))]
    log = tmp_path / "server.err"
    out = tmp_path / "server.out"
    with out.open("w") as stdout, log.open("w") as stderr:
        server = LocalServer(["--model", str(sepcnn_ckpt), "--max-upload-mb", "2"], stdout=stdout, stderr=stderr)
        with server as url, httpx.Client(base_url=url, timeout=120) as client:
            health = client.get("/health").json()
            assert health["status"] == "ok" and health["model"] == "sepcnn" and health["device"] == "cpu"
            page = client.get("/")
            assert page.status_code == 200 and "<form" in page.text
            assert client.get("/openapi.json").json()["info"]["title"] == "dfdetect"

            def predict(path):
                r = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
                assert r.status_code == 200, r.text
                return [(f["box"], f["p_fake"]) for f in r.json()["faces"]]

            serial = [predict(p) for p in photos]
            assert len(serial[0]) == 6
            # 16 requests at once from 8 clients: every answer equals its serial one.
            with ThreadPoolExecutor(max_workers=8) as pool:
                assert list(pool.map(predict, photos * 2 + photos[:6])) == serial * 2 + serial[:6]

            big = client.post("/predict", files={"file": ("big.jpg", b"\xff" * (3 * 2**20), "image/jpeg")})
            assert big.status_code == 413 and "2 MB" in big.json()["detail"]
            assert client.get("/health").status_code == 200  # still serving after the refusal
    assert server.returncode == 0  # SIGINT: graceful shutdown
    errors = log.read_text()
    assert "Uvicorn running on http://127.0.0.1:" in errors and '"POST /predict HTTP/1.1" 200' in errors
    assert out.read_text() == ""  # a server has no results for stdout: logs go to stderr


@pytest.mark.slow
def test_workers_each_load_the_model_from_the_factory(sepcnn_ckpt):
    with LocalServer(["--model", str(sepcnn_ckpt), "--workers", "2", "--no-detect"]) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            # The first worker may answer while the second is still loading: ask until both have.
            pids: set[int] = set()
            deadline = time.monotonic() + 120
            while len(pids) < 2 and time.monotonic() < deadline:
                pids.add(client.get("/health", headers={"Connection": "close"}).json()["pid"])
            assert client.get("/health").json()["face_detection"] is False
    assert len(pids) == 2, pids


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["serve", "-m", "resnet18"], 1, "architecture, not a trained model"),
        (["serve", "-m", "{missing}"], 1, "model file not found"),
        (["serve", "-m", "{broken}"], 1, "broken.pt"),
        (["serve", "-m", "{broken}", "--workers", "2"], 1, "broken.pt"),
        (["serve", "-m", "{ckpt}", "--workers", "0"], 2, "serve.workers"),
        (["serve", "-m", "{ckpt}", "--port", "70000"], 2, "serve.port"),
        (["serve", "-m", "{ckpt}", "--max-upload-mb", "0"], 2, "serve.max_upload_mb"),
    ],
)
def test_serve_refuses_bad_options_before_starting(tmp_path, sepcnn_ckpt, args, code, needle):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    fill = {"missing": str(tmp_path / "missing.pt"), "ckpt": str(sepcnn_ckpt), "broken": str(tmp_path / "broken.pt")}
    result = runner.invoke(app, [a.format(**fill) for a in args])
    assert result.exit_code == code, result.output
    assert needle in result.output


def test_help_lists_the_options():
    out = runner.invoke(app, ["serve", "-h"], env={"COLUMNS": "200"}).stdout
    for option in ("--host", "--port", "--workers", "--max-upload-mb", "--cors", "--model"):
        assert option in out


def test_only_loopback_urls_are_accepted_by_the_helpers():
    assert require_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert require_loopback("http://[::1]:8000") == "http://[::1]:8000"
    for url in ("http://10.0.0.5:8000", "http://example.com", "http://0.0.0.0:8000"):
        with pytest.raises(ValueError, match="loopback"):
            require_loopback(url)


def test_busy_port_is_a_one_line_error_with_exit_1(sepcnn_ckpt):
    """uvicorn would exit 3 ("judged fake" in our table) after loading the model; we say why, with 1."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "-m", str(sepcnn_ckpt), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
    result = runner.invoke(app, ["serve", "-m", str(sepcnn_ckpt), "--host", "no-such-host.invalid"])
    assert result.exit_code == 1 and "cannot listen on no-such-host.invalid" in result.stderr


def test_without_the_serve_extra_it_says_what_to_install(sepcnn_ckpt, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if 'pip install .' without [serve]
    result = runner.invoke(app, ["serve", "-m", str(sepcnn_ckpt)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "dfdetect serve needs uvicorn: pip install 'dfdetect[serve]'" in result.stderr


def test_connection_limits_reach_uvicorn_config(sepcnn_ckpt, monkeypatch):
    import uvicorn

    import deepfake_cli.cli.serve_cmd as serve_cmd
    from deepfake_cli.serve.protocol import IdleClosingH11Protocol

    seen = {}
    monkeypatch.setattr(serve_cmd, "_run_until_stopped", lambda app, service, options: seen.update(options, app=app))
    monkeypatch.setenv("DFDETECT_SERVE_MAX_HEADER_BYTES", "4096")
    result = runner.invoke(app, ["serve", "--model", str(sepcnn_ckpt), "--port", "0", "--no-detect",
                                 "--timeout-keep-alive", "2.5", "--limit-concurrency", "7", "--backlog", "50"])
    assert result.exit_code == 0, result.stderr
    config = uvicorn.Config(seen.pop("app"), **seen)
    assert (config.timeout_keep_alive, config.limit_concurrency, config.backlog) == (2.5, 7, 50)
    assert config.h11_max_incomplete_event_size == 4096
    config.load()
    assert config.http_protocol_class is IdleClosingH11Protocol


def test_an_idle_connection_is_closed_and_health_still_answers(sepcnn_ckpt):
    """uvicorn's keep-alive timer starts only after a response: a socket that never sent a
    request was held forever (250 of them exhausted the server's file descriptors)."""
    import socket
    from urllib.parse import urlsplit

    with LocalServer(["--model", str(sepcnn_ckpt), "--no-detect", "--timeout-keep-alive", "1"]) as url:
        address = urlsplit(url)
        idle = [socket.create_connection((address.hostname, address.port), timeout=10) for _ in range(20)]
        start = time.monotonic()
        try:
            assert all(s.recv(1) == b"" for s in idle)  # closed by the server, not by the 10 s timeout
            assert time.monotonic() - start < 8
            assert httpx.get(url.rstrip("/") + "/health", timeout=30).status_code == 200
        finally:
            for s in idle:
                s.close()


def test_idle_sockets_at_the_concurrency_limit_make_room_for_a_request(sepcnn_ckpt):
    """At limit_concurrency, a new connection closes the longest-idle ones: /health is 200, not 503."""
    import socket
    from urllib.parse import urlsplit

    with LocalServer(["--model", str(sepcnn_ckpt), "--no-detect", "--limit-concurrency", "10",
                      "--timeout-keep-alive", "30"]) as url:
        address = urlsplit(url)
        idle = [socket.create_connection((address.hostname, address.port), timeout=10) for _ in range(30)]
        try:
            start = time.monotonic()
            assert httpx.get(url.rstrip("/") + "/health", timeout=10).status_code == 200
            assert time.monotonic() - start < 5
        finally:
            for s in idle:
                s.close()


def test_the_access_log_cuts_long_query_strings():
    import io
    import logging
    import logging.config

    from deepfake_cli.cli.serve_cmd import _log_config

    config = _log_config()
    stream = io.StringIO()
    config["handlers"]["access"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/health?" + "a" * 5000, "1.1", 200)
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/health?x=1", "1.1", 200)
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    first, second = stream.getvalue().splitlines()
    assert len(first) < 300 and "...[4900 more]" in first and '/health?x=1 HTTP/1.1" 200' in second


def test_workers_get_one_annotated_video_folder_removed_when_the_server_stops(sepcnn_ckpt, monkeypatch, tmp_path):
    import os
    from pathlib import Path

    import uvicorn

    from deepfake_cli.serve.app import WORKER_ANNOTATED_ENV

    seen = {}

    def fake_run(target, **options):  # what the workers would find while they run
        folder = Path(os.environ[WORKER_ANNOTATED_ENV])
        seen.update(target=target, workers=options["workers"], folder=folder, existed=folder.is_dir())

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("DFDETECT_SERVE_UPLOAD_DIR", str(tmp_path))
    from deepfake_cli.serve.app import WORKER_CHECKPOINT_ENV, WORKER_CONFIG_ENV

    for name in (WORKER_ANNOTATED_ENV, WORKER_CHECKPOINT_ENV, WORKER_CONFIG_ENV):
        monkeypatch.setenv(name, "")  # run_server sets them for its workers: restored after the test
    result = runner.invoke(app, ["serve", "--model", str(sepcnn_ckpt), "--port", "0", "--workers", "2"])
    assert result.exit_code == 0, result.stderr
    assert seen["workers"] == 2 and seen["existed"] and seen["folder"].parent == tmp_path
    assert seen["folder"].name.startswith(f"dfdetect-uploads-{os.getpid()}-")  # swept after a kill, as uploads are
    assert not seen["folder"].exists()
