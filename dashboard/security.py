"""Serving the dashboard safely: the files it may read, the Host headers it answers, how it
answers a malformed request, and the WSGI server.

- Path fields (a sweep's Parquet, a validation CSV) read only inside the folders the
  server was started with (`Roots`): the `--data` file's folder (or the `--data`
  directory), `--allow` folders and the bundled presets. A path outside is refused with
  the same message whether or not it exists; symlinks and `..` are resolved first.
- The Host header must name the address the server is bound to (on loopback:
  127.0.0.1, localhost or [::1] with the port), which defeats DNS rebinding: a page on
  another site cannot make the browser talk to the dashboard under the attacker's name.
- A malformed callback request gets a short 400, never a 500 or a traceback.
- `serve` runs waitress (a production WSGI server) on every address; the dashboard has
  no authentication, so anything but loopback exposes it to the network (the CLI warns).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from einsim.einsum import SpecError

from .inputs import MAX_UPLOAD_BYTES

#: The bundled folders every dashboard may read (presets).
BUNDLED_FOLDERS = ("architectures", "gpus", "mappings")
#: The largest request body (an upload is base64: 4/3 of its bytes, plus the JSON).
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES * 3 // 2 + (1 << 20)
#: Entries of a dataset directory checked for links that leave the served folders.
MAX_DATASET_ENTRIES = 10_000
#: The Flask config key holding (host, port) once the server is bound.
BIND_KEY = "EINSIM_BIND"
CALLBACK_PATH = "/_dash-update-component"

_log = logging.getLogger("einsim.dashboard")


@dataclass(frozen=True, slots=True)
class Roots:
    """The folders path fields may read: resolved absolute paths."""

    folders: tuple[Path, ...]

    def holds(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.folders)


def bundled_folders() -> tuple[Path, ...]:
    base = resources.files("einsim.simulator")
    return tuple(Path(str(base.joinpath(name))).resolve() for name in BUNDLED_FOLDERS)


def roots_for(data: str | Path | None = None, allow: Iterable[str | Path] = ()) -> Roots:
    """The folders of a server started with `--data DATA` and `--allow DIR ...`: DATA's
    folder (DATA itself when a directory), each DIR, and the bundled presets.

    Example:
        >>> roots_for("/srv/sweeps/pareto.parquet").folders[0].as_posix()
        '/srv/sweeps'
    """
    folders: list[Path] = []
    if data:
        path = Path(data).expanduser().resolve()
        folders.append(path if path.is_dir() else path.parent)
    folders += [Path(d).expanduser().resolve() for d in allow]
    folders += bundled_folders()
    return Roots(tuple(dict.fromkeys(folders)))


def confine(value: object, roots: Roots, what: str) -> Path:
    """The resolved path of a path field, when it lies inside `roots`.

    A relative path is relative to the server's working directory; `~` is expanded;
    symlinks and `..` are resolved before the check, so neither leads outside. For a
    directory (a Parquet dataset), every entry must resolve inside too.

    Raises:
        SpecError: not a text, or a path outside the served folders: the same message
            whether or not it exists, so the field cannot probe the file system.
    """
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{what}: expected a path")
    shown = value.strip()[:200]
    refused = SpecError(
        f"{what} {shown!r}: not in a folder this dashboard serves (the --data folder, "
        "--allow folders, the bundled presets)"
    )
    if len(value) > 4096 or "\x00" in value:
        raise refused
    try:
        path = Path(os.path.abspath(os.path.expanduser(value.strip()))).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unreadable folder
        raise refused from None
    if not roots.holds(path):
        raise refused
    if path.is_dir():
        for count, entry in enumerate(path.rglob("*")):
            if count >= MAX_DATASET_ENTRIES:
                raise SpecError(f"{what} {shown!r}: more than {MAX_DATASET_ENTRIES:,} entries")
            try:
                inside = roots.holds(entry.resolve())
            except (OSError, RuntimeError):
                inside = False
            if not inside:
                raise SpecError(
                    f"{what} {shown!r}: holds a link to a file outside the served folders"
                )
    return path


# -------------------------------------------------------------------------- Host header


def is_loopback(host: str) -> bool:
    """Whether an address or name is this machine only (127.0.0.0/8, ::1, localhost).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("", "0.0.0.0", "::")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_host(header: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header (`127.0.0.1:8050`, `[::1]:8050`, `localhost`);
    None when malformed.

    Example:
        >>> split_host("[::1]:8050"), split_host("LocalHost."), split_host("a:b")
        (('::1', 8050), ('localhost', None), None)
    """
    header = header.strip()
    if header.startswith("["):
        name, close, rest = header[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        if header.count(":") > 1:
            return None
        name, colon, port_text = header.partition(":")
        port_text = port_text if colon else None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5:
            return None
        port = int(port_text)
    name = name.lower().rstrip(".")
    return (name, port) if name else None


def host_allowed(header: str | None, host: str, port: int | None) -> bool:
    """Whether a request's Host header names the server bound to `host`:`port`.

    Bound to loopback: 127.0.0.1, localhost, [::1] (or the bound address). Bound to one
    address or name: that one. Bound to every interface (0.0.0.0, ::): any IP address,
    localhost and this machine's names; a domain name that is not this machine's is what
    DNS rebinding needs, and is refused. The port must be the bound one (an absent port
    means 80). `port` None (not known yet) accepts any port.

    Example:
        >>> host_allowed("localhost:8050", "127.0.0.1", 8050)
        True
        >>> host_allowed("evil.example:8050", "127.0.0.1", 8050)
        False
    """
    if not header:
        return False
    parsed = split_host(header)
    if parsed is None:
        return False
    name, given_port = parsed
    if port is not None and (given_port or 80) != port:
        return False
    bound = host.strip("[]").lower()
    if is_loopback(bound):
        return name in {"127.0.0.1", "localhost", "::1", bound}
    if _is_wildcard(bound):
        names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
        return _is_ip(name) or name in names
    return name == bound.rstrip(".")


# ---------------------------------------------------------------------- request guards


def _well_formed_callback(body: object, known: object) -> bool:
    """The shape Dash's dispatcher indexes into: output (one of `known`), outputs, inputs,
    state."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        return False
    if body["output"] not in known:  # type: ignore[operator]
        return False
    if not isinstance(body.get("outputs"), (dict, list)):
        return False
    for key in ("inputs", "state"):
        items = body.get(key, [])
        if not isinstance(items, list):
            return False
        for item in items:
            group = item if isinstance(item, list) else [item]
            if not all(isinstance(i, dict) and "id" in i and "property" in i for i in group):
                return False
    return isinstance(body.get("changedPropIds", []), list)


def install_guards(app) -> None:
    """Host header check, callback JSON check and short error answers on a Dash app's
    Flask server; the bound address is read from `server.config[BIND_KEY]` (set by
    `serve` and `serve_in_thread`), loopback names on any port until then."""
    from flask import request
    from werkzeug.exceptions import HTTPException

    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    plain = {"Content-Type": "text/plain; charset=utf-8"}

    @server.before_request
    def _check_request():
        host, port = server.config.get(BIND_KEY, ("127.0.0.1", None))
        if not host_allowed(request.headers.get("Host"), host, port):
            return "einsim: unexpected Host header\n", 403, plain
        callback = request.method == "POST" and request.path.endswith(CALLBACK_PATH)
        if callback and not _well_formed_callback(request.get_json(silent=True), app.callback_map):
            return "einsim: malformed callback request\n", 400, plain
        return None

    @server.errorhandler(Exception)
    def _short_error(error):
        from dash.exceptions import DependencyException

        if isinstance(error, HTTPException):
            return f"einsim: {error.code} {error.name}\n", error.code or 400, plain
        if isinstance(error, DependencyException):  # an unknown /_dash-component-suites/ file
            return "einsim: 404 Not Found\n", 404, plain
        # Logged for the operator, never sent: a traceback tells an attacker too much.
        _log.error("dashboard request %s failed", request.path, exc_info=error)
        if request.path.endswith(CALLBACK_PATH):
            return f"einsim: bad callback request ({type(error).__name__})\n", 400, plain
        return "einsim: internal error\n", 500, plain


def bind(app, host: str, port: int) -> None:
    """Record the address the server listens on (for the Host header check)."""
    app.server.config[BIND_KEY] = (host, int(port))


def make_server(app, host: str = "127.0.0.1", port: int = 8050, threads: int = 8):
    """A waitress server for the app (not yet serving: `.run()`), its address recorded
    for the Host check; port 0 picks a free one (`server.config[BIND_KEY]` says which)."""
    from waitress.server import create_server

    server = create_server(
        app.server,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_REQUEST_BYTES,
        channel_timeout=60,
        ident="einsim",
        clear_untrusted_proxy_headers=True,
    )
    # One socket: its port (port 0 picks one); a name with several addresses: `port`.
    bind(app, host, getattr(server, "effective_port", port))
    return server


def no_authentication_warning(host: str) -> str | None:
    """The warning printed when the dashboard listens beyond loopback (None on loopback)."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: the dashboard listens on {host!r}: anyone who can reach this address can "
        "use it, and it has no authentication. Prefer the default 127.0.0.1 with an SSH "
        "tunnel (ssh -L 8050:127.0.0.1:8050 HOST)."
    )
