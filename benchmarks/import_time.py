"""Start-up: wall time and `python -X importtime` of `einsim --help`, `import einsim` and a
small `einsim map` (gemm 16 x 8 x 4 on fusemax_cloud, greedy), each in a fresh process,
with the heavy packages each one loaded (pandas, dash, plotly, pyarrow, numba, sympy, ...).

    python benchmarks/import_time.py [--repeat 3]

Prints seconds (the best of --repeat runs) and the slowest top-level imports.
"""

import argparse
import re
import subprocess
import sys
import time

HEAVY = ("pandas", "pyarrow", "dash", "plotly", "numba", "llvmlite", "sympy", "networkx", "scipy")
CLI = "from einsim.cli import main; main()"
CASES = {
    "einsim --help": [CLI, "--help"],
    "import einsim": ["import einsim"],
    "einsim map (small)": [
        CLI, "map", "--variant", "gemm", "--arch", "fusemax_cloud", "--shape", "M=16,N=8,K=4",
        "--budget", "2000",
    ],
}  # fmt: skip
LOADED = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(sorted("
    "{m.split('.')[0] for m in sys.modules} & set(%r))) + '\\n'))\n"
)


def run(args: list[str], importtime: bool) -> tuple[float, str]:
    code, rest = args[0], args[1:]
    flags = ["-X", "importtime"] if importtime else []
    argv = [sys.executable, *flags, "-c", LOADED % (HEAVY,) + code, *rest]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(rest) or code}: exit {done.returncode}\n{done.stderr}")
    return seconds, done.stderr


def top_imports(stderr: str, n: int = 4) -> list[tuple[str, float]]:
    """Third-party packages by cumulative import time (s), from `-X importtime`'s lines
    (a package's own line, wherever it was first imported; einsim's own modules left out)."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| *(\S+)$", line)
        if found and "." not in found.group(2) and found.group(2) != "einsim":
            name = found.group(2)
            if not name.startswith("_") and name not in sys.stdlib_module_names:
                totals[name] = max(totals.get(name, 0.0), int(found.group(1)) / 1e6)
    return sorted(totals.items(), key=lambda kv: -kv[1])[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    print(f"{'command':<20} {'wall s':>7}  heavy packages loaded; slowest imports (s)")
    for name, args in CASES.items():
        best = min(run(args, importtime=False)[0] for _ in range(repeat))
        _, stderr = run(args, importtime=True)
        loaded = next((ln[7:] for ln in stderr.splitlines() if ln.startswith("LOADED ")), "")
        slow = ", ".join(f"{k} {v:.2f}" for k, v in top_imports(stderr))
        print(f"{name:<20} {best:7.2f}  [{loaded or 'none'}]; {slow}")


if __name__ == "__main__":
    main()
