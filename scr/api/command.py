"""`scr serve`: run the HTTP API (registered by scr.cli; FastAPI and uvicorn are imported only here)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from scr.cli_support import USER_ERRORS, err, print_error, settings_from


def command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (0.0.0.0: all)"),
    port: int = typer.Option(8080, "--port", help="TCP port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="SCR_API_TOKEN", show_envvar=True,
                                        help="bearer token that write endpoints require"),
    vllm_model: Optional[str] = typer.Option(None, "--vllm-model", help="model name the vLLM server serves"),
    model_name: str = typer.Option("scr", "--model-name", help="model id of the OpenAI-compatible endpoint"),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="questions per backend batch"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
) -> None:
    """Serve the query API, the facts API and an OpenAI-compatible chat endpoint over HTTP."""
    import uvicorn

    from scr.api.app import create_app

    try:
        settings = settings_from(ctx, vllm_model=vllm_model)
        err.print(f"loading models and the knowledge base {settings.kb_dir} ...")
        # The app owns this engine and closes it at shutdown.
        app = create_app(settings, api_token=token or os.environ.get("SCR_API_TOKEN") or None,
                         model_name=model_name, max_batch=max_batch)
    except USER_ERRORS as exc:
        print_error(exc)
        raise typer.Exit(1)
    auth = "write endpoints need the bearer token" if app.state.options.api_token else "no API token set"
    err.print(f"serving on http://{host}:{port} (docs: /docs; {auth})", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
