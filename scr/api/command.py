"""`scr serve`: run the HTTP API (registered by scr.cli; FastAPI and uvicorn are imported only here)."""

from __future__ import annotations

import os
import socket
from typing import Optional

import typer

from scr.cli_support import USER_ERRORS, err, print_error, settings_from

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (0.0.0.0: all)"),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="SCR_API_TOKEN", show_envvar=True,
                                        help="bearer token that write endpoints require"),
    vllm_model: Optional[str] = typer.Option(None, "--vllm-model", help="model name the vLLM server serves"),
    model_name: str = typer.Option("scr", "--model-name", help="model id of the OpenAI-compatible endpoint"),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="questions per backend batch"),
    log_level: str = typer.Option("info", "--log-level", help=f"uvicorn log level: {', '.join(LOG_LEVELS)}"),
) -> None:
    """Serve the query API, the facts API and an OpenAI-compatible chat endpoint over HTTP."""
    import uvicorn

    from scr.api.app import create_app

    try:
        if log_level not in LOG_LEVELS:
            raise ValueError(f"--log-level {log_level!r}: choose from {', '.join(LOG_LEVELS)}")
        _check_port_free(host, port)  # before the models load: a taken port is known in a second, not a minute
        settings = settings_from(ctx, vllm_model=vllm_model)
        err.print(f"loading models and the knowledge base {settings.kb_dir} ...")
        # The app owns this engine and closes it at shutdown.
        app = create_app(settings, api_token=token or os.environ.get("SCR_API_TOKEN") or None,
                         model_name=model_name, max_batch=max_batch)
    except (*USER_ERRORS, OSError) as exc:
        print_error(exc)
        raise typer.Exit(1)
    auth = "write endpoints need the bearer token" if app.state.options.api_token else "no API token set"
    err.print(f"serving on http://{host}:{port} (docs: /docs; {auth})", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _check_port_free(host: str, port: int) -> None:
    """Bind (host, port) once, as uvicorn will, and let go; an OSError names the address when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a TIME_WAIT port is free
        try:
            probe.bind(address)
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
