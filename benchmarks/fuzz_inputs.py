"""Mutation fuzzing of every input kind einsim reads: cascade text and the YAML specs.

For each kind, seeds (the bundled variants, architectures, GPUs, mappings, a constraints
set, the bundled sweep example) are mutated (text edits, token swaps, interesting numbers,
repeated chunks and nesting, YAML values replaced at a random key path, alias bombs) and
every mutated input is loaded and validated (the cheap checks: parse, load, validate). One
accepted input in USE_EVERY = 50 (by its position among its chunk's accepted inputs, so the
sample is deterministic) is also used downstream (a cascade round-tripped, evaluated by the
numpy reference and its operations counted, an architecture, GPU or mapping costed
through the target interface, constraints searched with a tiny budget, a sweep spec's
first points evaluated as a sweep worker does, in a forked child held to SWEEP_CPU_S of
CPU), so that "accepted, then crashed later" is caught without paying the costing on
every input. A kind's inputs are cut into chunks of CHUNK seeded by (seed, kind,
chunk), run in parallel processes (--jobs), so the result does not depend on the process
count. Printed per kind: inputs, accepted, used, refused later (a clean EinsimError
downstream), SpecErrors (EinsimErrors) and the share naming a line/column or a file and
key (must be 100%), other exceptions (must be 0), nan/inf results (must be 0), uses cut
at their CPU limit (sweep points asking for more work), inputs over 2 s of CPU time (the
thread's and its forked children's; must be 0; wall time beside it, which a loaded shared
machine inflates), and the slowest input.

    python benchmarks/fuzz_inputs.py --count 100000 --table results.txt   # every kind
    python benchmarks/fuzz_inputs.py --kinds cascade --count 2000 --seed 3

Failing and slowest inputs are written to --out (default /tmp/einsim_fuzz) for replay.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import re
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from einsim.einsum import EinsimError, parse_cascade, resolve_shape
from einsim.einsum.analysis import op_counts
from einsim.einsum.executor import evaluate as run_cascade
from einsim.workloads import ATTENTION, KERNELS, cascade

INTERESTING_NUMBERS = [
    "0", "-1", "0.5", "256.5", "1e5", "1e30", "1e-300", "100000000000000000000", "2147483648",
    "1099511627776", "9" * 5000, "nan", ".nan", ".inf", "-.inf", "1k", "2^40", "1_000", "00",
]  # fmt: skip
INTERESTING_TOKENS = [
    "(", ")", "[", "]", ",", "+", "-", "*", "/", "//", "%", "=", "<=", "->", ":", "where",
    "and", "or", "max(m)", "sum(k)", "exp(", "inf", "-inf", "M1", "M0", "m1+1", "m", "p",
    "partition: M -> M1, M0", "partition: X -> M1, M0", "sizes: M0=1e5", "ranks: M, P",
    "mask: m <= p", "outputs: AV", "inputs: Q[e,p]", "#", "\t", "é", "٣", "\x00", "'", '"',
    "&a", "*a", "<<:", "{", "}", "- ", ": ", "!!python/object:os.system", "!!float", "---",
]  # fmt: skip
INTERESTING_VALUES: list[object] = [
    0, -1, 0.5, 256.5, 1e30, 1e-300, 10**9, 10**20, 2**40, float("nan"), float("inf"),
    -float("inf"), "1k", "", None, True, False, [], {}, [1, 2], {"a": 1}, "GB", 42, 5, "rest",
    "fit", "2d", "magic", "9" * 400, [[["x"]]], ["QK", "QK"], {"drain": 5}, "M", "P",
]  # fmt: skip
ALIAS_BOMB = 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)
)
LOCATION = re.compile(r"line \d+, column \d+")
# The mutator's own YAML reading and writing (libyaml when present: it is only the fuzzer).
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FAST_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# ----------------------------------------------------------------------------- seeds


def _bundled(folder: str) -> list[str]:
    root = resources.files("einsim.simulator").joinpath(folder)
    return [
        p.read_text()
        for p in sorted(root.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".yaml")
    ]


def seeds(kind: str) -> list[str]:
    if kind == "cascade":
        texts = [str(cascade(name)) for name in [*ATTENTION, *KERNELS]]
        return [*texts, str(cascade("block_topk", TOPK=5)), str(cascade("neighborhood_3d"))]
    if kind == "architecture":
        return _bundled("architectures")
    if kind == "gpu":
        return _bundled("gpus")
    if kind == "mapping":
        return _bundled("mappings")
    if kind == "constraints":
        return [
            "fusion: fused\nbinding: {QK: 2d, AV: 1d}\nspatial: {2d: [P, M0]}\n"
            "factors: {GB.P: 4}\nforbid_orders: [[M1, P]]\nkeep: {GB: [Q]}\n"
            "bypass: {GB: [BK]}\noverlap: pipelined\nchained_ops: [[sub, exp]]\npadded: true\n",
            "fusion: unfused\nfactors: {spatial.P: 16}\npadded: false\n",
        ]
    if kind == "sweep":
        root = resources.files("einsim.sweeps").joinpath("examples")
        return [p.read_text() for p in root.iterdir() if p.name.endswith(".yaml")]
    raise ValueError(kind)


# --------------------------------------------------------------------------- mutators


def _numbers(text: str) -> list[re.Match]:
    return list(re.finditer(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", text))


def mutate_text(text: str, rng: random.Random) -> str:
    """One random edit of the text (the kinds of edit a hostile or careless user makes)."""
    lines = text.splitlines() or [""]
    choice = rng.randrange(11)
    pos = rng.randrange(len(text) + 1)
    if choice == 0:  # delete a span
        return text[:pos] + text[pos + rng.randint(1, 20) :]
    if choice == 1:  # duplicate a line
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif choice == 2:  # delete a line
        del lines[rng.randrange(len(lines))]
    elif choice == 3:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 4:  # insert a token
        return text[:pos] + rng.choice(INTERESTING_TOKENS) + text[pos:]
    elif choice == 5:  # replace a number
        found = _numbers(text)
        if found:
            m = rng.choice(found)
            return text[: m.start()] + rng.choice(INTERESTING_NUMBERS) + text[m.end() :]
        return text + rng.choice(INTERESTING_NUMBERS)
    elif choice == 6:  # replace a word by another of the text
        words = list(re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", text))
        if words:
            m, other = rng.choice(words), rng.choice(words)
            return text[: m.start()] + other.group() + text[m.end() :]
    elif choice == 7:  # repeat a chunk many times (chains, long lines)
        chunk = text[pos : pos + rng.randint(1, 30)]
        return text[:pos] + chunk * rng.choice([2, 10, 100, 1500, 20000]) + text[pos:]
    elif choice == 8:  # nest a span in brackets
        end = min(len(text), pos + rng.randint(1, 20))
        n = rng.choice([2, 30, 70, 500])
        opener, closer = rng.choice([("(", ")"), ("[", "]"), ("{", "}"), ("exp(", ")")])
        return text[:pos] + opener * n + text[pos:end] + closer * n + text[end:]
    elif choice == 9:  # a random character
        return (
            text[:pos]
            + chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x3000)]))
            + text[pos:]
        )
    else:  # several edits
        for _ in range(rng.randint(2, 4)):
            text = mutate_text(text, rng)
        return text
    return "\n".join(lines)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if len(prefix) > 20:
        return out
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def mutate_yaml(text: str, rng: random.Random) -> str:
    """A text edit, or a value replaced / a key removed or added at a random key path."""
    roll = rng.random()
    if roll < 0.45:
        return mutate_text(text, rng)
    if roll < 0.48:
        return ALIAS_BOMB + text if rng.random() < 0.5 else text + "\n" + ALIAS_BOMB
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return mutate_text(text, rng)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.7:
            # a copy: a later edit must not change the shared INTERESTING_VALUES
            parent[path[-1]] = copy.deepcopy(rng.choice(INTERESTING_VALUES))
        elif action < 0.85 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["bogus", "name", "rows", "levels", 5])] = copy.deepcopy(
                rng.choice(INTERESTING_VALUES)
            )
    return yaml.dump(data, Dumper=_FAST_DUMPER, sort_keys=False)


# --------------------------------------------------------------------------- consumers


class Nonsense(Exception):
    """An accepted input that produced nan or inf."""


def _small_shape(c) -> dict[str, int]:
    shape = {r: 3 for r in c.ranks}
    for einsum in c.einsums:
        shape.update({s: 2 for s in einsum.sizes if s not in shape})
    shape.update(dict(c.default_sizes))
    shape = {k: min(v, 4) for k, v in shape.items()}
    for part in c.partitions:
        shape.pop(part.upper, None)
    return shape


def load_cascade(text: str):
    return parse_cascade(text, origin="fuzz.cascade")


def use_cascade(c) -> None:
    again = parse_cascade(str(c), name=c.name)
    if again != c:
        raise AssertionError("round trip changed the cascade")
    shape = _small_shape(c)
    sizes = resolve_shape(c, shape)
    rng = np.random.default_rng(0)
    inputs = {t.name: rng.standard_normal([sizes[r] for r in t.ranks]) for t in c.inputs}
    run_cascade(c, inputs, shape, method="materialize")
    op_counts(c, shape, inputs=inputs)  # small spaces: a new filter is counted with numpy


_FIXTURES: dict = {}


def _fixtures():
    if not _FIXTURES:
        from einsim.simulator import load_architecture, load_mapping

        _FIXTURES.update(
            fusemax_arch=load_architecture("fusemax_cloud"),
            fusemax_map=load_mapping("fusemax"),
            cascade=cascade("fusemax"),
            systolic=load_architecture("systolic"),
        )
    return _FIXTURES


SHAPE = {"B": 1, "H": 2, "E": 16, "F": 16, "M": 512, "P": 256}
GEMM_SHAPE = {"M": 64, "N": 48, "K": 32}


def _finite(report) -> None:
    for name in ("latency_s", "energy_pj", "cycles", "dram_bytes"):
        value = getattr(report, name, None)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise Nonsense(f"{name} = {value}")


def _yaml(text: str, kind: str) -> dict:
    from einsim.simulator.spec import parse_yaml

    return parse_yaml(text, ORIGINS[kind])


def load_architecture_text(text: str):
    from einsim.simulator.targets import target_of_spec

    data, origin = _yaml(text, "architecture"), ORIGINS["architecture"]
    return target_of_spec(data, origin).from_dict(data, origin)


#: Per target kind, (cascade, mapping, shape) an accepted architecture is costed with: the
#: first pairing its units and levels can run (FuseMax on fusemax_cloud, the three-pass
#: softmax on flat_cloud, a GEMM on systolic and their mutants; a FlashAttention-2 tiling on
#: a GPU); none: refused later.
ARCH_USES = {
    "spatial": (
        ("fusemax_1pass", "fusemax", "attention"),
        ("stable_3pass", "flat", "attention"),
        ("gemm", "gemm_ws", "gemm"),
    ),
    "gpu": (("fusemax", "fused:Br=64,Bc=64,warps=4", "attention"),),
}


def _cost(target, name: str, arch, mapping, shape) -> None:
    """Cost `cascade(name)` on `arch` through the target interface; nan/inf is Nonsense."""
    report = target.evaluate(cascade(name), arch, target.load_mapping(mapping), shape)
    typed = target.typed(arch, report)
    if typed.valid:
        _finite(typed)


def use_architecture(arch) -> None:
    from einsim.simulator.targets import target_of

    target = target_of(arch)
    first = None
    for name, mapping, shape in ARCH_USES[target.kind]:
        try:
            _cost(target, name, arch, mapping, SHAPE if shape == "attention" else GEMM_SHAPE)
        except EinsimError as error:
            first = first or error
            continue
        return
    raise first


def load_gpu(text: str):
    from einsim.simulator.targets import TARGETS

    return TARGETS["gpu"].from_dict(_yaml(text, "gpu"), ORIGINS["gpu"])


def use_gpu(arch) -> None:
    from einsim.simulator.targets import TARGETS

    _cost(TARGETS["gpu"], "fusemax", arch, "fused:Br=64,Bc=64,warps=4", SHAPE)


def load_mapping_text(text: str):
    from einsim.simulator.spatial.mapping import mapping_from_dict

    return mapping_from_dict(_yaml(text, "mapping"), ORIGINS["mapping"])


def use_mapping(mapping) -> None:
    from einsim.simulator.targets import TARGETS

    f = _fixtures()
    arch = f["systolic"] if mapping.cascade == "gemm" else f["fusemax_arch"]
    shape = GEMM_SHAPE if mapping.cascade == "gemm" else SHAPE
    _cost(TARGETS["spatial"], mapping.cascade, arch, mapping, shape)


def load_constraints_text(text: str):
    from einsim.mapper.constraints import constraints_from_dict

    return constraints_from_dict(_yaml(text, "constraints"), ORIGINS["constraints"])


def use_constraints(constraints) -> None:
    from einsim.mapper import search

    f = _fixtures()
    search(
        f["cascade"],
        f["fusemax_arch"],
        SHAPE,
        strategy="random",
        budget=4,
        constraints=constraints,
    )


def load_sweep(text: str):
    from einsim.sweeps.spec import parse_spec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_spec(_yaml(text, "sweep"), ORIGINS["sweep"])


#: An accepted sweep spec is expanded and its first SWEEP_POINTS points evaluated as a sweep
#: worker evaluates them (the spec's schema, then `evaluate_table`), in a forked child with
#: SWEEP_CPU_S seconds of CPU (RLIMIT_CPU: a compiled loop cannot outrun it) and
#: SWEEP_MEMORY_BYTES more address space than the fuzzing process. A point still running
#: then is counted as cut: the spec asked for that much work (a 2^31-token NATTEN point),
#: which is the sweep's job, not a hang of einsim's.
SWEEP_POINTS = 2
SWEEP_CPU_S = 1
SWEEP_WALL_S = 30.0
SWEEP_MEMORY_BYTES = 4 * 2**30


class Cut(Exception):
    """A use stopped at its CPU limit (the input asked for more work than the fuzz allows)."""


def _einsim_errors() -> set[str]:
    names, todo = set(), [EinsimError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def _evaluate_sweep(spec) -> tuple[str, str]:
    """(verdict, message) of the spec's first points: "ok", "refused" (every point refused
    with an EinsimError), "other" (a point failed with another exception) or "nonsense"."""
    from einsim.sweeps.store import evaluate_table, schema

    table = evaluate_table(spec, range(min(spec.size, SWEEP_POINTS)), schema(spec))
    rows = table.to_pylist()
    errors = [row["error"] for row in rows if row["error"]]
    clean = _einsim_errors()
    for error in errors:
        if error.split(":")[0] not in clean:
            return "other", error
    for row in rows:
        if not row["valid"]:
            continue
        numbers = ["latency_s", "cycles", "dram_bytes"]
        numbers += ["energy_pj"] if row["target"] == "spatial" else []
        for name in numbers:
            if not math.isfinite(row[name]):
                return "nonsense", f"point {row['point_id']}: {name} = {row[name]}"
    if rows and len(errors) == len(rows):
        return "refused", errors[0]
    return "ok", ""


def _in_child(fn, arg) -> tuple[str, str]:
    """fn(arg) -> (verdict, message) in a forked child under the SWEEP_* limits; "cut" when
    the child was stopped at its CPU or wall-time limit."""
    import os
    import pickle
    import resource
    import select
    import signal

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read)
            resource.setrlimit(resource.RLIMIT_CPU, (SWEEP_CPU_S, SWEEP_CPU_S + 1))
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/statm") as f:
                mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limit = mapped + SWEEP_MEMORY_BYTES
            resource.setrlimit(resource.RLIMIT_AS, (limit if hard < 0 else min(hard, limit), hard))
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = fn(arg)
            except EinsimError as error:
                result = ("refused", str(error).splitlines()[0] if str(error) else "")
            except Exception as error:
                tb = traceback.format_exc(limit=-3)
                result = (f"other {type(error).__name__}", tb[-800:])
            with os.fdopen(write, "wb") as out:
                pickle.dump(result, out)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        ready, _, _ = select.select([f], [], [], SWEEP_WALL_S)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if data:
        return pickle.loads(data)
    if not ready or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU):
        return "cut", "stopped at the CPU or wall-time limit"
    return "other", f"the child died (wait status {status})"


def use_sweep(spec) -> None:
    verdict, message = _in_child(_evaluate_sweep, spec)
    if verdict == "refused":
        raise EinsimError(message)  # a clean refusal of every point evaluated
    if verdict == "nonsense":
        raise Nonsense(message)
    if verdict == "cut":
        raise Cut(message)
    if verdict != "ok":
        raise RuntimeError(f"{verdict}: {message}")


#: kind -> (load: text -> object, raising SpecError; use: exercise an accepted object)
CONSUMERS: dict[str, tuple[Callable[[str], object], Callable[[object], None]]] = {
    "cascade": (load_cascade, use_cascade),
    "architecture": (load_architecture_text, use_architecture),
    "gpu": (load_gpu, use_gpu),
    "mapping": (load_mapping_text, use_mapping),
    "constraints": (load_constraints_text, use_constraints),
    "sweep": (load_sweep, use_sweep),
}
ORIGINS = {
    "cascade": "fuzz.cascade",
    "architecture": "fuzz_arch.yaml",
    "gpu": "fuzz_gpu.yaml",
    "mapping": "fuzz_map.yaml",
    "constraints": "fuzz_c.yaml",
    "sweep": "fuzz_sweep.yaml",
}


def names_location(message: str, kind: str, text: str) -> bool:
    """Whether an error names where: a line and column, or the file and a key (a key path
    before a colon, a quoted key, or one of the document's keys named in words)."""
    if LOCATION.search(message):
        return True
    origin = ORIGINS[kind]
    if kind == "cascade" or not message.startswith(origin):
        return False
    rest = message[len(origin) :]
    if re.match(r"(: |\.)[^:]+: ", rest) or re.match(r": [^']*'[^']+'", rest):
        return True
    if re.match(r": (expected .*at the top level|the YAML has \d+ characters)", rest):
        return True
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return False
    keys = {k for path in _paths(data) for k in path if isinstance(k, str) and len(k) > 1}
    return any(re.search(rf"\b{re.escape(k)}\b", rest) for k in keys)


# ------------------------------------------------------------------------------ run


#: Every input is loaded and validated; one accepted input in USE_EVERY (by its position
#: among the accepted inputs of its chunk: deterministic) is also used downstream (costed,
#: searched, evaluated), the expensive part.
USE_EVERY = 50
#: Inputs per work unit: a kind's inputs are cut into chunks of this many, each with its own
#: seed, so that kinds and chunks run in parallel processes and results do not depend on
#: how many processes ran them.
CHUNK = 5_000
#: An input whose load (and, when sampled, use) takes longer than this is a hang.
HANG_S = 2.0


@dataclass
class Tally:
    tried: int = 0
    accepted: int = 0
    used: int = 0
    spec_errors: int = 0
    located: int = 0
    refused_later: int = 0
    other: int = 0
    nonsense: int = 0
    cut: int = 0  # uses stopped at their CPU limit (sweep points: see SWEEP_CPU_S)
    over_cpu: int = 0  # inputs over HANG_S of CPU time (load + use)
    over_wall: int = 0  # inputs over HANG_S of wall time (a shared machine inflates it)
    slowest_cpu_s: float = 0.0
    slowest_wall_s: float = 0.0
    slowest_use_cpu_s: float = 0.0
    examples: list = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in (
            "tried", "accepted", "used", "spec_errors", "located", "refused_later", "other",
            "nonsense", "cut", "over_cpu", "over_wall",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("slowest_cpu_s", "slowest_wall_s", "slowest_use_cpu_s"):
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        self.examples += other.examples


def _cpu() -> float:
    """CPU seconds of this thread and of the finished children (a sweep's forked use)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + kids.ru_utime + kids.ru_stime


def run_chunk(kind: str, chunk: int, count: int, seed: int, out: Path) -> Tally:
    """`count` mutated inputs of one kind, seeded by (seed, kind, chunk)."""
    rng = random.Random(f"{seed}-{kind}-{chunk}")
    corpus = seeds(kind)
    mutate = mutate_text if kind == "cascade" else mutate_yaml
    load, use = CONSUMERS[kind]
    tally = Tally()
    seen: set[int] = set()
    tag = f"{kind}_{chunk:03d}"
    for _ in range(count):
        text = mutate(rng.choice(corpus), rng)
        if rng.random() < 0.3:
            text = mutate(text, rng) if kind == "cascade" else mutate_text(text, rng)
        tally.tried += 1
        wall0, cpu0 = time.perf_counter(), _cpu()
        use_cpu = 0.0
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = load(text)
                tally.accepted += 1
                if hash(text) not in seen and len(corpus) < 400 and len(text) < 20000:
                    seen.add(hash(text))
                    corpus.append(text)  # grow the corpus from accepted inputs
                if tally.accepted % USE_EVERY == 1:
                    tally.used += 1
                    used0 = _cpu()
                    try:
                        use(loaded)
                    except EinsimError:
                        tally.refused_later += 1  # shape- or pairing-dependent: clean refusal
                    except Cut:
                        tally.cut += 1
                    use_cpu = _cpu() - used0
        except EinsimError as error:
            tally.spec_errors += 1
            first = str(error).splitlines()[0] if str(error) else ""
            if names_location(first, kind, text):
                tally.located += 1
            elif len(tally.examples) < 200:
                tally.examples.append(("unlocated", first[:300], text))
        except Nonsense as error:
            tally.nonsense += 1
            tally.examples.append(("nonsense", str(error), text))
        except Exception as error:
            tally.other += 1
            tb = traceback.format_exc(limit=-3)
            tally.examples.append((f"other {type(error).__name__}", tb[-800:], text))
        cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
        tally.over_cpu += cpu > HANG_S
        tally.over_wall += wall > HANG_S
        tally.slowest_wall_s = max(tally.slowest_wall_s, wall)
        tally.slowest_use_cpu_s = max(tally.slowest_use_cpu_s, use_cpu)
        if cpu > tally.slowest_cpu_s:
            tally.slowest_cpu_s = cpu
            (out / f"{tag}_slowest.txt").write_text(f"# {cpu:.3f} s CPU, {wall:.3f} s wall\n{text}")
    for n, (what, message, text) in enumerate(tally.examples[:50]):
        (out / f"{tag}_{n:03d}_{what.replace(' ', '_')}.txt").write_text(
            f"# {what}: {message}\n{text}"
        )
    tally.examples = [(what, message) for what, message, _ in tally.examples[:5]]
    return tally


def _run_chunk(job: tuple) -> tuple[str, Tally, float]:
    kind, chunk, count, seed, out = job
    start = time.perf_counter()
    return kind, run_chunk(kind, chunk, count, seed, Path(out)), time.perf_counter() - start


def probes() -> None:
    """The issue's hand-made inputs, each timed once: loaded, refused or accepted."""
    from einsim.simulator.spec import parse_yaml

    gemm = "inputs: A[k,m], B[k,n]\n"
    cases = {
        "429 KB inputs: line": "inputs: "
        + ", ".join(f"T{i}[a,b]" for i in range(36000))
        + "\nZ[a,b] = T0[a,b]",
        "429 KB index list": "inputs: A[" + ",".join(["a"] * 214000) + "]\nZ[a] = A[a]",
        "75 nested parentheses": gemm + "Z[m,n] = " + "(" * 75 + "A[k,m]" + ")" * 75,
        "1500 chained +": gemm + "Z[m,n] = A[k,m]*B[k,n]" + " + A[k,m]*B[k,n]" * 1500,
        "5000-digit size": gemm + "sizes: M0=" + "9" * 5000 + "\nZ[m,n] = A[k,m]*B[k,n]",
    }
    for what, text in cases.items():
        start = time.perf_counter()
        try:
            parse_cascade(text)
            result = "accepted"
        except EinsimError as error:
            result = str(error).splitlines()[0][:70]
        print(f"{what:<24}{len(text):>9} chars {time.perf_counter() - start:8.4f} s  {result}")
    start = time.perf_counter()
    try:
        parse_yaml(ALIAS_BOMB, "bomb.yaml")
        result = "accepted"
    except EinsimError as error:
        result = str(error)[:70]
    elapsed = time.perf_counter() - start
    print(f"{'alias bomb':<24}{len(ALIAS_BOMB):>9} chars {elapsed:8.4f} s  {result}")


HEADER = (
    f"{'kind':<13}{'inputs':>8}{'accepted':>9}{'used':>6}{'later':>6}{'SpecError':>10}"
    f"{'located':>9}{'other':>6}{'nan/inf':>8}{'cut':>5}{'>2s cpu':>8}{'>2s wall':>9}"
    f"{'max cpu s':>10}{'max wall s':>11}{'max use s':>10}{'chunks s':>9}"
)


def row(kind: str, t: Tally, cpu_s: float) -> str:
    share = t.located / t.spec_errors if t.spec_errors else 1.0
    return (
        f"{kind:<13}{t.tried:>8}{t.accepted:>9}{t.used:>6}{t.refused_later:>6}"
        f"{t.spec_errors:>10}{share:>9.2%}{t.other:>6}{t.nonsense:>8}{t.cut:>5}{t.over_cpu:>8}"
        f"{t.over_wall:>9}{t.slowest_cpu_s:>10.3f}{t.slowest_wall_s:>11.3f}"
        f"{t.slowest_use_cpu_s:>10.3f}{cpu_s:>9.0f}"
    )


def main() -> None:
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs per kind")
    parser.add_argument("--kinds", default=",".join(CONSUMERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--out", default="/tmp/einsim_fuzz", help="failing and slowest inputs")
    parser.add_argument("--probes", action="store_true", help="time the issue's inputs only")
    parser.add_argument("--table", help="also write the table here, updated after each chunk")
    args = parser.parse_args()
    if args.probes:
        probes()
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = args.kinds.split(",")
    jobs = [
        (kind, chunk, min(CHUNK, args.count - chunk * CHUNK), args.seed, str(out))
        for chunk in range(-(-args.count // CHUNK))
        for kind in kinds
    ]
    totals = {kind: Tally() for kind in kinds}
    cpu = dict.fromkeys(kinds, 0.0)
    began = time.perf_counter()
    intro = (
        f"{args.count} inputs per kind (seed {args.seed}) in chunks of {CHUNK}, {args.jobs} "
        f"processes; every input loaded and validated, 1 accepted input in {USE_EVERY} used "
        f"downstream; a hang is an input over {HANG_S} s (CPU time of its thread and "
        "children; wall time beside it, inflated on a shared machine)"
    )
    print(intro, flush=True)

    def table(done: int) -> str:
        lines = [intro, f"{done}/{len(jobs)} chunks done, wall {time.perf_counter() - began:.0f} s"]
        lines += [HEADER, *(row(kind, totals[kind], cpu[kind]) for kind in kinds)]
        for kind in kinds:
            lines += [f"  {kind} {w}: {m[:160]!r}" for w, m in totals[kind].examples[:3]]
        return "\n".join(lines) + "\n"

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run_chunk, job) for job in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            kind, tally, seconds = future.result()
            totals[kind].add(tally)
            cpu[kind] += seconds
            if args.table:
                Path(args.table).write_text(table(done))
            if done % max(1, len(jobs) // 20) == 0:
                elapsed = time.perf_counter() - began
                print(f"  {done}/{len(jobs)} chunks, {elapsed:.0f} s", flush=True)
    print(HEADER)
    for kind in kinds:
        print(row(kind, totals[kind], cpu[kind]))
    print(f"wall {time.perf_counter() - began:.0f} s; failing inputs under {out}")
    for kind in kinds:
        for what, message in totals[kind].examples[:3]:
            print(f"  {kind} {what}: {message[:160]!r}")


if __name__ == "__main__":
    main()
