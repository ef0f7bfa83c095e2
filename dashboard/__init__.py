"""The Dash dashboard: design points, the cascade graph, sweeps and GPU validation.

`einsim dashboard [--port] [--data results.parquet]` serves it; in Python,
`create_app(data=...)` builds it and `serve_in_thread(app)` serves it from a thread. The
figures and tables are pure functions (`design`, `figures`, `schedule`, `sweep`,
`validation`, `search`) that the app's callbacks only place on the page.
"""

from .app import create_app, serve_in_thread

__all__ = ["create_app", "serve_in_thread"]
