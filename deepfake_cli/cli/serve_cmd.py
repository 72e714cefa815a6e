"""``dfdetect serve``: the REST API and web page under uvicorn, the model loaded once at start-up."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import typer

from deepfake_cli.cli.common import (
    default_of,
    BorderlineBandOption,
    ConfigOption,
    DeviceOption,
    ModelOption,
    TtaOption,
    build_config,
    escape,
    handle_errors,
    prepare_runtime,
    print_calibration_note,
    stderr,
)


def serve(
    model: Optional[str] = ModelOption,
    config: Optional[Path] = ConfigOption,
    host: Optional[str] = typer.Option(None, "--host", help=f"Address to listen on (default {default_of('serve.host')}: this machine only)."),
    port: Optional[int] = typer.Option(None, "--port", "-p", help=f"TCP port (default {default_of('serve.port')})."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help=f"Worker processes, each with its own copy of the model (default {default_of('serve.workers')})."),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", help=f"Largest upload accepted, in MB; bigger ones get 413 (default {default_of('serve.max_upload_mb')})."),
    cors: Optional[bool] = typer.Option(None, "--cors/--no-cors", help=f"Allow cross-origin browser requests from any site (default {default_of('serve.cors')})."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Decision threshold on p_fake (default: the model's calibrated one)."),
    borderline_band: Optional[float] = BorderlineBandOption,
    tta: Optional[str] = TtaOption,
    no_detect: bool = typer.Option(False, "--no-detect", "--whole-image", help="Uploads are already face crops: skip face detection."),
    device: Optional[str] = DeviceOption,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for inference per worker."),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="debug, info, warning or error."),
    timeout_keep_alive: Optional[float] = typer.Option(None, "--timeout-keep-alive", help=f"Seconds an idle connection (new, or between requests) stays open (default {default_of('serve.timeout_keep_alive')})."),
    limit_concurrency: Optional[int] = typer.Option(None, "--limit-concurrency", help=f"Connections and requests at once; beyond it requests get 503 (default {default_of('serve.limit_concurrency')}; 0: no limit)."),
    backlog: Optional[int] = typer.Option(None, "--backlog", help=f"Connections the system queues for the server to accept (default {default_of('serve.backlog')})."),
) -> None:
    """Serve the detector over HTTP: a web page at /, the API at /predict, /predict/video,
    /gradcam, /models and /health, and its documentation at /docs and /redoc.

    Example: dfdetect serve -m model.pt --port 8000, then open http://127.0.0.1:8000/
    or run: curl -F file=@photo.jpg http://127.0.0.1:8000/predict
    """
    with handle_errors():
        cfg = build_config(
            config,
            {
                "model.name": model,
                "serve.host": host,
                "serve.port": port,
                "serve.workers": workers,
                "serve.max_upload_mb": max_upload_mb,
                "serve.cors": cors,
                "predict.threshold": threshold,
                "predict.borderline_band": borderline_band,
                "predict.tta": tta,
                "face.detect": False if no_detect else None,
                "runtime.device": device,
                "runtime.num_threads": threads,
                "runtime.log_level": log_level,
                "serve.timeout_keep_alive": timeout_keep_alive,
                "serve.limit_concurrency": limit_concurrency,
                "serve.backlog": backlog,
            },
        )
        run_server(cfg)


def _check_address(host: str, port: int) -> None:
    """:class:`ServerError` when ``host:port`` cannot be listened on (in use, not this machine's address)."""
    import socket

    from deepfake_cli.errors import ServerError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _run_until_stopped(app, service, options: dict) -> None:
    """uvicorn's server; on SIGTERM or Ctrl-C, running video scans also stop at their next
    frame (their clients get 503) instead of running out the graceful-shutdown wait."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, **options))
    handle_exit = server.handle_exit

    def stop_scans_then_exit(sig, frame) -> None:
        service.stopping.set()
        handle_exit(sig, frame)

    server.handle_exit = stop_scans_then_exit  # type: ignore[method-assign]
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a clean stop, as uvicorn.run has it
        pass


def _importable(module: str) -> bool:
    import sys
    from importlib.util import find_spec

    if module in sys.modules:
        return sys.modules[module] is not None  # None: blocked on purpose (tests)
    return find_spec(module) is not None


def run_server(cfg) -> None:
    from deepfake_cli.errors import OptionalDependencyError

    # The [serve] extra's packages and their modules (python-multipart: FastAPI's form uploads,
    # imported as python_multipart, or multipart before 0.0.13).
    needed = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart")}
    for package, modules in needed.items():
        if not any(_importable(m) for m in modules):
            raise OptionalDependencyError(f"dfdetect serve needs {package}: pip install 'dfdetect[serve]'")
    import uvicorn

    from deepfake_cli.models.checkpoint import load_checkpoint
    from deepfake_cli.models.store import resolve_model
    from deepfake_cli.serve.app import WORKER_ANNOTATED_ENV, WORKER_CHECKPOINT_ENV, WORKER_CONFIG_ENV, create_app
    from deepfake_cli.serve.service import make_upload_dir

    sc = cfg.serve
    _check_address(sc.host, sc.port)  # before the model loads, and with our exit code, not uvicorn's 3
    make_upload_dir(sc.upload_dir).rmdir()  # a folder for uploads can be made there (ConfigError: exit 2)
    checkpoint = resolve_model(cfg.model.name)
    if not _is_loopback(sc.host):
        stderr.print(
            f"[yellow]warning:[/] listening on {escape(sc.host)}: anyone who can reach this machine can upload "
            "files and use the model; there is no authentication"
        )
    url = f"http://{sc.host if ':' not in sc.host else f'[{sc.host}]'}:{sc.port}/"
    common = {
        "host": sc.host,
        "port": sc.port,
        "log_level": cfg.runtime.log_level,
        "log_config": _log_config(),
        "timeout_graceful_shutdown": 10,
        **connection_options(sc),
    }
    if sc.workers == 1:
        prepare_runtime(cfg)
        app = create_app(checkpoint, cfg)
        service = app.state.service
        stderr.print(
            f"[dim]model {escape(service.model_name)} ({service.classifier.arch}), device {service.classifier.device}, "
            f"face detection {'on' if service.pipeline.detector else 'off'}; page at {url}, API docs at {url}docs[/]"
        )
        print_calibration_note(service.classifier)
        _run_until_stopped(app, service, common)
        return
    # Workers are separate processes: uvicorn imports the app factory in each, which
    # loads the model once there. Fail here, once, if the checkpoint is unusable.
    load_checkpoint(checkpoint)
    if cfg.runtime.num_threads is None:
        cfg.runtime.num_threads = max(1, (os.cpu_count() or 1) // sc.workers)
    os.environ[WORKER_CHECKPOINT_ENV] = str(Path(checkpoint).resolve())
    os.environ[WORKER_CONFIG_ENV] = json.dumps(cfg.to_dict())
    # One folder of annotated videos for every worker: the GET for a video may reach another
    # worker than the one that wrote it. Named like an upload folder (this process's id), so
    # that a killed server's is swept at the next start; removed when the server stops.
    annotated = make_upload_dir(sc.upload_dir)
    os.environ[WORKER_ANNOTATED_ENV] = str(annotated)
    stderr.print(f"[dim]{sc.workers} workers, {cfg.runtime.num_threads} threads each; page at {url}, API docs at {url}docs[/]")
    try:
        uvicorn.run("deepfake_cli.serve.app:app_from_env", factory=True, workers=sc.workers, **common)
    finally:
        shutil.rmtree(annotated, ignore_errors=True)


def connection_options(sc) -> dict:
    """uvicorn.Config's connection limits from ``[serve]``: idle connections closed (new ones
    too), requests at once, the listen backlog, the size of a request head."""
    from deepfake_cli.serve.protocol import PROTOCOL

    return {
        "http": PROTOCOL,
        "timeout_keep_alive": sc.timeout_keep_alive,
        "limit_concurrency": sc.limit_concurrency or None,
        "backlog": sc.backlog,
        "h11_max_incomplete_event_size": sc.max_header_bytes,
    }


def _log_config() -> dict:
    """uvicorn's logging, with access lines on stderr too (stdout is for results) and our logger."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["dfdetect"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config.setdefault("filters", {})["accept_errors"] = {"()": "deepfake_cli.serve.protocol.AcceptErrorFilter"}
    config["filters"]["access_query"] = {"()": "deepfake_cli.serve.protocol.AccessLogQueryFilter"}
    config["handlers"]["access"]["filters"] = ["access_query"]
    config["loggers"]["asyncio"] = {"handlers": ["default"], "level": "WARNING", "propagate": False, "filters": ["accept_errors"]}
    return config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
