"""The Dash dashboard: design points, the cascade graph, sweeps and GPU validation.

`einsim dashboard [--port] [--host] [--data results.parquet] [--allow DIR]` serves it with
waitress; in Python, `create_app(data=..., allow=...)` builds it and `serve_in_thread(app)`
serves it from a thread (werkzeug, for tests). The figures and tables are pure functions
(`design`, `figures`, `schedule`, `sweep`, `validation`, `search`) that the app's callbacks
only place on the page; every callback input passes through `inputs` (types and bounds),
the sweep filter through `filter` (a small language, never evaluated as code), and the
server through `security` (confined paths, the Host check, short error answers).
"""

from .app import create_app, serve_in_thread

__all__ = ["create_app", "serve_in_thread"]
