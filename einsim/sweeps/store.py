"""The results of a sweep on disk: a Parquet dataset, one part file per finished chunk.

Layout of an output directory `results.parquet/`:

    _einsim_sweep.json          what sweep this is (spec, its hash, the einsim version)
    part-<run>-<seq>.parquet    one finished chunk each, with the same key-value metadata
    .part-<run>-<seq>.tmp       a chunk being written (renamed when complete)

Readers (pandas, DuckDB, pyarrow.dataset) skip names starting with `_` or `.`, so they see
only complete parts, all with one schema decided before the first point runs.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from .spec import SweepSpec, _canonical

MANIFEST = "_einsim_sweep.json"
FORMAT = "einsim-sweep/1"
_PART = re.compile(r"^part-[0-9a-f]+-\d+\.parquet$")
_TEMP = re.compile(r"^\.(part-[0-9a-f]+-\d+|manifest)\.tmp$")


def _version() -> str:
    import einsim

    return einsim.__version__


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
    """An output directory opened for one run: refuses foreign or different-spec contents,
    knows the finished points, writes parts atomically, and holds a lock while open."""

    def __init__(self, path: str | Path, spec: SweepSpec, overwrite: bool = False):
        self.path = Path(path)
        self.spec = spec
        self.schema = schema(spec)
        self.run = secrets.token_hex(4)
        self.parts = 0
        self._lock = None
        self.done = self._open(overwrite)

    # -- opening ----------------------------------------------------------------------
    def _refuse(self, why: str) -> SpecError:
        return SpecError(f"output {str(self.path)!r}: {why}")

    def _open(self, overwrite: bool) -> set[str]:
        if self.path.exists() and not self.path.is_dir():
            raise self._refuse("exists and is not a directory; choose another output")
        self.path.mkdir(parents=True, exist_ok=True)
        entries = sorted(p.name for p in self.path.iterdir())
        foreign = [
            e for e in entries if e != MANIFEST and not _PART.match(e) and not _TEMP.match(e)
        ]
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise self._refuse(
                f"holds files that are not einsim sweep results ({listed}); refusing to "
                "write there (choose another output)"
            )
        manifest = self.path / MANIFEST
        if entries and MANIFEST not in entries:
            raise self._refuse(
                f"has part files but no {MANIFEST}: not an einsim sweep directory, or a "
                "damaged one; refusing to write there"
            )
        if manifest.exists():
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
            self._lock_manifest()  # no other run is writing here
            if overwrite:
                for entry in entries:
                    if entry != MANIFEST:
                        (self.path / entry).unlink()
                old_lock = self._lock
                self._write_manifest()
                self._lock_manifest()
                old_lock.close()
                return set()
        else:
            self._write_manifest()
            self._lock_manifest()
        done: set[str] = set()
        for entry in entries:
            if _TEMP.match(entry):  # a chunk an interrupted run never finished
                (self.path / entry).unlink(missing_ok=True)
            elif _PART.match(entry):
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
        body = {
            "format": FORMAT,
            "einsim_version": _version(),
            "spec_sha256": self.spec.digest,
            "spec": self.spec.to_dict(),
        }
        temp = self.path / ".manifest.tmp"
        temp.write_text(json.dumps(body, indent=1, default=str))
        os.replace(temp, self.path / MANIFEST)

    def _lock_manifest(self) -> None:
        handle = open(self.path / MANIFEST)  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise self._refuse("another sweep is writing to it right now") from None
        self._lock = handle

    # -- writing ----------------------------------------------------------------------
    def write(self, table: pa.Table) -> Path:
        """Write one finished chunk under a temporary name, then rename it into place."""
        name = f"part-{self.run}-{self.parts:05d}.parquet"
        temp = self.path / f".part-{self.run}-{self.parts:05d}.tmp"
        pq.write_table(table, temp)
        os.replace(temp, self.path / name)
        self.parts += 1
        return self.path / name

    def close(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None
