"""HTTP API: a thin FastAPI layer over scr.engine.Engine (query, facts, OpenAI-compatible chat).

FastAPI is imported only when an app is built, so importing this package (the CLI does) stays cheap.
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """See scr.api.app.create_app."""
    from scr.api.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
