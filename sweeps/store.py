"""The results of a sweep on disk: a Parquet dataset, one part file per finished chunk.

Layout of an output directory `results.parquet/`:

    _einsim_sweep.json          what sweep this is (spec, its hash, the einsim version)
    part-<run>-<seq>.parquet    one finished chunk each, with the same key-value metadata
    .part-<run>-<seq>.tmp       a chunk being written (renamed when complete)
    .manifest.tmp               the manifest being written (renamed when complete)
    .einsim-sweep.lock          the running writer's pid and host (see `lock`)

Readers (pandas, DuckDB, pyarrow.dataset) skip names starting with `_` or `.`, so they see
only complete parts, all with one schema decided before the first point runs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from einsim.einsum import SpecError

from .evaluate import BASE_OUTPUTS, NUMBERS, _architecture, arch_columns, evaluate_chunk
from .lock import LOCK, DirectoryLock
from .spec import SweepSpec, _canonical

MANIFEST = "_einsim_sweep.json"
MANIFEST_TEMP = ".manifest.tmp"
FORMAT = "einsim-sweep/1"
_PART = re.compile(r"^part-[0-9a-f]+-\d+\.parquet$")
_TEMP = re.compile(r"^\.(part-[0-9a-f]+-\d+|manifest)\.tmp$")


@functools.cache
def _version() -> str:
    """einsim's installed version (its package metadata: sweeps sit below `einsim` itself in
    the import order, so they do not import it)."""
    from importlib.metadata import version

    return version("einsim")


def _input_type(values: Sequence[object]) -> pa.DataType:
    if all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def schema(spec: SweepSpec) -> pa.Schema:
    """The one schema of every part: point_id, the spec's keys (typed from their values),
    then the outputs; the architectures' columns are the union over the spec's presets.

    Raises:
        SpecError: an architecture the spec names that does not load.
    """
    fields = [pa.field("point_id", pa.string(), nullable=False)]
    for key in spec.keys:
        fields.append(pa.field(key, _input_type(spec.values_of(key))))
    fields += [pa.field(k, pa.bool_() if k == "valid" else pa.string()) for k in BASE_OUTPUTS]
    fields += [pa.field(k, pa.float64()) for k in NUMBERS]
    per_arch: dict[str, None] = {}
    for name in dict.fromkeys(spec.values_of("arch")):
        per_arch.update(dict.fromkeys(arch_columns(_architecture(name, "{}"))))
    fields += [pa.field(k, pa.float64()) for k in per_arch]
    return pa.schema(fields, metadata=metadata(spec))


def metadata(spec: SweepSpec) -> dict[bytes, bytes]:
    """Parquet key-value metadata: the einsim version and the (normalized) spec."""
    return {
        b"einsim.version": _version().encode(),
        b"einsim.spec": _canonical(spec.to_dict()).encode(),
        b"einsim.spec_sha256": spec.digest.encode(),
    }


def _cell(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping | list):
        return _canonical(value)
    return str(value)


def to_table(columns: Mapping[str, object], schema: pa.Schema) -> pa.Table:
    """A worker's columns as a table of the sweep's schema (absent columns are null)."""
    n = len(columns["point_id"])
    arrays = []
    for field in schema:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(n, field.type))
        elif field.type == pa.string() and field.name not in BASE_OUTPUTS:
            try:  # names and paths are strings already; a searched mapping is a dict
                arrays.append(pa.array(values, pa.string()))
            except (pa.ArrowException, TypeError):
                arrays.append(pa.array([_cell(v) for v in values], pa.string()))
        else:
            arrays.append(pa.array(values, field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def evaluate_table(spec: SweepSpec, indices: Sequence[int], schema: pa.Schema) -> pa.Table:
    """Points `indices` of `spec` as a table of the sweep's schema: the task a worker runs
    (indices travel to it and an Arrow table travels back, both far cheaper than lists of
    Python objects)."""
    names = schema.names
    columns = tuple(names[names.index(NUMBERS[-1]) + 1 :])
    points = spec.points_at(indices)
    return to_table(evaluate_chunk(points, columns), schema)


class Store:
    """An output directory opened for one run: takes the directory's lock before writing
    anything, refuses foreign or different-spec contents, knows the finished points,
    writes parts and the manifest atomically, and releases the lock on `close`.

    Raises:
        SpecError: a foreign, damaged or different-sweep directory, or one another live
            sweep is writing to (one line each).
        OSError: the directory cannot be written (read-only, no space left): one line
            naming the output; what was finished stays and a rerun resumes.
    """

    def __init__(self, path: str | Path, spec: SweepSpec, overwrite: bool = False):
        self.path = Path(path)
        self.spec = spec
        self.schema = schema(spec)
        self.run = secrets.token_hex(4)
        self.parts = 0
        self._lock: DirectoryLock | None = None
        try:
            self.done = self._open(overwrite)
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"output {str(self.path)!r}"

    def _refuse(self, why: str) -> SpecError:
        return SpecError(f"{self.label}: {why}")

    def _os_error(self, error: OSError, doing: str) -> OSError:
        """`error` as one line naming the output and what was being done, with advice."""
        why = error.strerror or str(error).splitlines()[0]
        code = error.errno
        if code is None:  # pyarrow's IO errors carry the errno only in their text
            found = re.search(r"errno (\d+)", str(error), re.IGNORECASE)
            code = int(found.group(1)) if found else None
        advice = {
            errno.ENOSPC: "free some space and rerun the same command to resume",
            errno.EDQUOT: "free some space and rerun the same command to resume",
            errno.EROFS: "choose a writable output",
            errno.EACCES: "choose a writable output",
            errno.EPERM: "choose a writable output",
        }.get(code, "rerun the same command to resume")
        kept = f"; the {self.parts} part(s) this run finished are kept" if self.parts else ""
        return OSError(code, f"{self.label}: {why} while {doing}{kept}; {advice}")

    def _entries(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK)

    def _check_foreign(self, entries: list[str]) -> None:
        foreign = [
            e for e in entries if e != MANIFEST and not _PART.match(e) and not _TEMP.match(e)
        ]
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise self._refuse(
                f"holds files that are not einsim sweep results ({listed}); refusing to "
                "write there (choose another output)"
            )

    def _open(self, overwrite: bool) -> set[str]:
        if self.path.exists() and not self.path.is_dir():
            raise self._refuse("exists and is not a directory; choose another output")
        if self.path.is_dir():  # refuse a foreign directory before writing anything to it
            self._check_foreign(self._entries())
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._os_error(error, "creating the directory") from None
        lock = DirectoryLock(self.path, self.label)
        try:
            lock.acquire()  # before anything else is written: one writer per directory
        except OSError as error:
            raise self._os_error(error, f"creating the lock file {LOCK}") from None
        self._lock = lock
        entries = self._entries()
        self._check_foreign(entries)
        try:
            for entry in entries:  # a chunk or manifest an interrupted run never finished
                if _TEMP.match(entry):
                    (self.path / entry).unlink(missing_ok=True)
        except OSError as error:
            raise self._os_error(error, "removing an unfinished temporary file") from None
        entries = [e for e in entries if not _TEMP.match(e)]
        manifest = self.path / MANIFEST
        if entries and MANIFEST not in entries:
            raise self._refuse(
                f"has part files but no {MANIFEST}: not an einsim sweep directory, or a "
                "damaged one; refusing to write there"
            )
        if MANIFEST in entries:
            try:
                old = json.loads(manifest.read_text())
                same = (old["spec_sha256"], old["einsim_version"]) == (
                    self.spec.digest,
                    _version(),
                )
            except (ValueError, KeyError, TypeError):
                raise self._refuse(f"{MANIFEST} is unreadable; refusing to write there") from None
            if not same and not overwrite:
                what = (
                    f"einsim {old['einsim_version']}, this is {_version()}"
                    if old["spec_sha256"] == self.spec.digest
                    else f"spec {old['spec_sha256'][:12]}, this spec {self.spec.digest[:12]}"
                )
                raise self._refuse(
                    f"holds the results of a different sweep ({what}); choose another output, "
                    "or pass overwrite (--overwrite) to replace them"
                )
            if overwrite:
                try:
                    for entry in entries:
                        if entry != MANIFEST:
                            (self.path / entry).unlink()
                except OSError as error:
                    raise self._os_error(error, "removing the results it replaces") from None
                self._write_manifest()
                return set()
        else:
            self._write_manifest()
        done: set[str] = set()
        for entry in entries:
            if _PART.match(entry):
                done.update(self._read_ids(self.path / entry))
        return done

    def _read_ids(self, part: Path) -> list[str]:
        try:
            found = pq.read_schema(part).metadata or {}
            ids = pq.read_table(part, columns=["point_id"]).column("point_id").to_pylist()
        except (OSError, pa.ArrowException, KeyError) as error:
            raise self._refuse(
                f"{part.name} is not a readable part ({str(error).splitlines()[0]}); delete it "
                "and run again to recompute its points"
            ) from None
        if found.get(b"einsim.spec_sha256") != self.spec.digest.encode():
            raise self._refuse(f"{part.name} belongs to a different sweep; refusing to mix them")
        return ids

    def _write_manifest(self) -> None:
        """Write the manifest atomically: a temporary file, fsync, rename, fsync the folder.
        A failure removes the temporary file; a leftover one is removed by the next run."""
        body = {
            "format": FORMAT,
            "einsim_version": _version(),
            "spec_sha256": self.spec.digest,
            "spec": self.spec.to_dict(),
        }
        temp = self.path / MANIFEST_TEMP
        try:
            with open(temp, "w") as handle:
                handle.write(json.dumps(body, indent=1, default=str))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path / MANIFEST)
            _fsync_directory(self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise self._os_error(error, f"writing {MANIFEST}") from None

    # -- writing ----------------------------------------------------------------------
    def write(self, table: pa.Table) -> Path:
        """Write one finished chunk under a temporary name, then rename it into place.

        Not fsynced: a killed process loses nothing the kernel has, and a part a power
        loss truncates is refused by name on the next run (delete it, rerun); an fsync
        per part costs 10-40 ms here, as much as evaluating a 256-point chunk.

        Raises:
            OSError: one line (no space left, read-only): the temporary file is removed,
                the parts written so far stay, and a rerun resumes.
        """
        name = f"part-{self.run}-{self.parts:05d}.parquet"
        temp = self.path / f".part-{self.run}-{self.parts:05d}.tmp"
        try:
            pq.write_table(table, temp)
            os.replace(temp, self.path / name)
        except OSError as error:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise self._os_error(error, f"writing {name}") from None
        self.parts += 1
        return self.path / name

    def close(self) -> None:
        """Release the directory's lock (idempotent)."""
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()


def _fsync_directory(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
