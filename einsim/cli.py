"""The `einsim` command.

Exit status (the contract scripts may rely on):

    0    success
    1    it ran, but the result is not valid: `evaluate` of a mapping that does not fit,
         `sweep` whose every evaluated point was invalid or raised, `check` with a
         mismatch (`map` finding no valid mapping is an InfeasibleError: 2)
    2    bad input or an environment error: every `EinsimError` (SpecError, MappingError,
         InfeasibleError, BackendUnavailable) and every `OSError` (a missing file, no space
         left, a read-only output), and click's usage errors
    130  interrupted (Ctrl+C); 143 terminated (SIGTERM): finished sweep parts are kept

Errors (status 2) are exactly one line on stderr, `einsim: error: ...`, without a
traceback; `einsim --debug COMMAND ...` prints the full message and the traceback too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from einsim.einsum import EinsimError, SpecError


def _parse_params(pairs: tuple[str, ...], option: str = "--param") -> dict[str, object]:
    """`--param M0=64` -> {"M0": 64}: plain digits are ints, decimals finite floats, anything
    else a short string (`einsim.einsum.validation.parameter_value`); nan, inf, a key given
    twice and keys that are not names are refused."""
    from einsim.einsum import validation

    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or len(key) > validation.MAX_NAME_CHARS or key != key.split()[0]:
            raise SpecError(f"{option} {pair[:80]!r}: expected KEY=VALUE, e.g. M0=64")
        if key in params:
            raise SpecError(f"{option} {key}: given twice")
        params[key] = validation.parameter_value(value, f"{option} {key}")
    return params


def _one_line(error: BaseException) -> str:
    """The first line of an error's message; an OSError as its reason and file name."""
    if isinstance(error, OSError) and not isinstance(error, EinsimError):
        text = error.strerror or str(error) or type(error).__name__
        names = [n for n in (error.filename, error.filename2) if n is not None]
        if names:
            text += ": " + " -> ".join(repr(str(n)) for n in names)
    else:
        text = str(error) or type(error).__name__
    return text.splitlines()[0] if text.strip() else type(error).__name__


class _Group(click.Group):
    """Turns einsim's own errors and OS errors into one line on stderr and exit status 2,
    and any other exception (a bug) into one line and exit status 3 (with `--debug`: the
    full message and the traceback as well)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("einsim: interrupted", err=True)
            sys.exit(130)
        except (EinsimError, OSError) as error:
            if isinstance(error, BrokenPipeError):
                raise  # stdout closed early (`einsim ... | head`): click exits quietly
            if ctx.params.get("debug"):
                import traceback

                traceback.print_exception(error, file=sys.stderr)
            click.echo(f"einsim: error: {_one_line(error)}", err=True)
            sys.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors and click's own exits keep their messages and statuses
        except Exception as error:  # a bug in einsim, not bad input: one line, status 3
            if ctx.params.get("debug"):
                import traceback

                traceback.print_exception(error, file=sys.stderr)
            click.echo(
                f"einsim: internal error: {type(error).__name__}: {_one_line(error)} "
                "(a bug in einsim: rerun with --debug for the traceback and report it)",
                err=True,
            )
            sys.exit(3)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="einsim")
@click.option(
    "--debug",
    is_flag=True,
    help="on an error, print the traceback (and a parse error's caret) too",
)
def main(debug: bool) -> None:
    """einsim: simulate attention cascades on accelerators and explore their mappings.

    Exit status: 0 success; 1 ran but the result is invalid (a mapping that does not fit,
    a sweep whose points all failed); 2 bad input or an OS error (one line on stderr);
    3 an internal error, a bug in einsim (one line; --debug prints the traceback)."""


def _build(name: str, params: tuple[str, ...]):
    from einsim.workloads import cascade

    return cascade(name, **_parse_params(params))


@main.command()
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="variant parameter")
def show(name: str, params: tuple[str, ...]) -> None:
    """Print the cascade of attention variant NAME in the text syntax."""
    click.echo(str(_build(name, params)), nl=False)


@main.command()
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="variant parameter")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def passes(name: str, params: tuple[str, ...], fmt: str) -> None:
    """Print the lower bound on passes over each rank of variant NAME."""
    from einsim.einsum import pass_analysis

    table = pass_analysis(_build(name, params))
    if fmt == "json":
        click.echo(json.dumps({"variant": name, "passes": table}))
        return
    width = max(len("rank"), *(len(r) for r in table))
    click.echo(f"{'rank':<{width}}  passes")
    for rank, count in table.items():
        click.echo(f"{rank:<{width}}  {count}")


@main.command()
def variants() -> None:
    """List the registered attention variants with their parameters and pass counts."""
    from einsim.workloads import ATTENTION, parameters, pass_counts

    for entry in ATTENTION.entries():
        params = ", ".join(f"{k}={v}" for k, v in parameters(entry.name).items())
        aliases = f" (alias: {', '.join(entry.aliases)})" if entry.aliases else ""
        click.echo(f"{entry.name}{aliases}: {entry.summary}" + (f" [{params}]" if params else ""))
        counts = "; ".join(
            f"{form} {n if isinstance(n, int) else ','.join(f'{r}={k}' for r, k in n.items())}"
            for form, n in pass_counts(entry.name).items()
        )
        click.echo(f"    passes over M: {counts}")


def _parse_shape(shape: str) -> dict[str, int]:
    """`B=64,H=12,M=P=1024` -> {"B": 64, ..., "M": 1024, "P": 1024} (`M=P=1024` sets both);
    every size an integer in [1, 2^31 - 1]."""
    from einsim.einsum import validation

    pairs = []
    for pair in (p for p in shape.split(",") if p):
        *keys, value = pair.split("=")
        pairs += [f"{key}={value}" for key in keys] if len(keys) > 1 else [pair]
    values = _parse_params(tuple(pairs), "--shape")
    for key, value in values.items():
        if not isinstance(value, int):
            raise SpecError(f"--shape {key}={value}: expected an integer size")
        validation.rank_size(value, f"--shape {key}")
    return values  # type: ignore[return-value]


def _design_options(command):
    """The options naming one design: cascade, architecture, shape, parameters, overrides."""
    options = [
        click.option(
            "--variant",
            required=True,
            help="cascade: an attention variant (einsim variants) or a kernel such as gemm",
        ),
        click.option(
            "--arch", "arch_name", required=True, help="bundled architecture or YAML path"
        ),
        click.option("--shape", required=True, metavar="B=64,H=12,E=64,...", help="rank sizes"),
        click.option(
            "--param", "params", multiple=True, metavar="KEY=VALUE", help="variant parameter"
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="PATH=VALUE",
            help="override an architecture number by its YAML path, e.g. units.2d.rows=64",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command(name="evaluate")
@_design_options
@click.option(
    "--mapping",
    "mapping_name",
    required=True,
    help="bundled mapping or YAML path; on a GPU preset a tiling such as fused:Br=128,Bc=64",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def evaluate_command(variant, arch_name, mapping_name, shape, params, overrides, fmt):
    """Predict latency, energy, traffic and utilization of one mapping."""
    from einsim.simulator import load_architecture
    from einsim.simulator.targets import target_of

    shape_values = _parse_shape(shape)
    arch = load_architecture(arch_name, _parse_params(overrides, "--set"))
    cascade = _build(variant, params)
    # The target kind loads the mapping (a GPU: a tiling, e.g. fused:Br=128) and costs it.
    target = target_of(arch)
    report = target.evaluate(cascade, arch, mapping_name, shape_values)
    typed = target.typed(arch, report)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    **report.to_dict(),
                    "target": typed.target,
                    "calibration": typed.calibration,
                    "energy_method": typed.energy_method,
                    **({"energy_pj": None} if typed.energy_pj is None else {}),
                },
                default=str,
            )
        )
    elif fmt == "csv":
        click.echo(report.per_einsum.to_csv(index=False), nl=False)
    else:
        click.echo(f"valid        {report.valid}" + "".join(f"\n  {r}" for r in report.reasons))
        _echo_totals(report, typed)
        table = report.per_einsum
        if typed.energy_pj is None:  # not modelled on this target: not printed
            table = table.drop(columns=["energy_pj", "lowered"], errors="ignore")
        click.echo(table.to_string(index=False))
    _exit_if_invalid(report, "the mapping does not fit")


def _exit_if_invalid(report, what: str) -> None:
    """Exit with status 1 and one line on stderr when `report` is not valid."""
    if not report.valid:
        reasons = "; ".join(report.reasons) or "no reason given"
        click.echo(f"einsim: invalid: {what}: {reasons}", err=True)
        sys.exit(1)


def _echo_totals(report, typed=None) -> None:
    """The table form's totals of a Report: latency, cycles, energy, DRAM bytes, utilization;
    with its typed view (`simulator.targets.TargetReport`), the calibration and energy lines
    (a GPU: "uncalibrated" until a fitted calibration is loaded; energy not modelled)."""
    click.echo(f"latency_s    {report.latency_s:.6g}")
    click.echo(f"cycles       {report.cycles:.6g}")
    if typed is None or typed.energy_pj is not None:
        click.echo(f"energy_pj    {report.energy_pj:.6g}")
    for line in typed.lines() if typed is not None else ():
        click.echo(line)
    click.echo(f"dram_bytes   {report.dram_bytes:.6g}")
    for unit, value in report.utilization.items():
        click.echo(f"util_{unit:<8}{value:.3f}")
    lowered = getattr(report, "lowered_einsums", None)
    if lowered:  # operators a unit lacks, run lowered (simulator/lowering.py)
        click.echo("lowered      " + "; ".join(f"{e} ({ops})" for e, ops in lowered.items()))


@main.command(name="map")
@_design_options
@click.option(
    "--objective",
    type=click.Choice(["latency", "energy", "edp"]),
    default="latency",
    show_default=True,
)
@click.option(
    "--strategy",
    default="greedy",
    show_default=True,
    help="greedy (the measured best, as in Python and the dashboard), exhaustive, random or "
    "anneal (einsim.mapper.STRATEGIES)",
)
@click.option("--budget", type=int, default=100_000, show_default=True, help="most candidates")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed")
@click.option("--constraints", default=None, metavar="FILE", help="constraints YAML")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-o", "--output", default=None, metavar="FILE", help="write the best mapping (YAML)")
@click.option("--force", is_flag=True, help="overwrite an existing -o file")
def map_command(
    variant, arch_name, shape, params, overrides, objective, strategy, budget, seed,
    constraints, fmt, output, force,
):  # fmt: skip
    """Search the mappings of a cascade on an architecture for the best one."""
    from pathlib import Path

    from einsim.mapper import search
    from einsim.simulator import load_architecture, mapping_to_dict, mapping_to_yaml
    from einsim.simulator.targets import target_of

    if output is not None and Path(output).exists() and not force:
        raise SpecError(f"-o {output}: the file exists; pass --force to overwrite it")
    if constraints is not None and not Path(constraints).is_file():
        raise SpecError(f"--constraints {constraints!r}: no such file")
    shape_values = _parse_shape(shape)
    arch = load_architecture(arch_name, _parse_params(overrides, "--set"))
    target = target_of(arch)
    if target.kind == "gpu" and output is not None:
        raise SpecError(
            f"-o: on a GPU ({arch_name}) the mapping is the tiling this command prints; "
            "give it to einsim evaluate --mapping"
        )
    result = search(
        _build(variant, params),
        arch,
        shape_values,
        objective=objective,
        strategy=strategy,
        budget=budget,
        seed=seed,
        constraints=constraints,
    )
    report = result.report
    typed = target.typed(arch, report)
    if output is not None:
        argv = ["einsim map", f"--variant {variant}", f"--arch {arch_name}", f"--shape {shape}"]
        argv += [f"--param {p}" for p in params] + [f"--set {o}" for o in overrides]
        argv += [f"--objective {objective}", f"--strategy {result.strategy}"]
        argv += [f"--budget {budget}", f"--seed {seed}"]
        argv += [f"--constraints {constraints}"] if constraints else []
        header = (
            f"Found by: {' '.join(argv)}\n"
            f"{result.evaluated:,} candidates costed, {result.pruned:,} pruned, "
            f"{result.invalid:,} invalid, in {result.wall_s:.2f} s; best {objective}: "
            f"latency {report.latency_s:.6g} s, energy {report.energy_pj:.6g} pJ\n"
            f"Check it: einsim evaluate --variant {variant} --arch {arch_name} "
            f"--mapping {output} --shape {shape}"
        )
        Path(output).write_text(mapping_to_yaml(result.mapping, header))
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "variant": variant,
                    "arch": arch_name,
                    "shape": shape_values,
                    "objective": objective,
                    "strategy": result.strategy,
                    "budget": budget,
                    "seed": seed,
                    "latency_s": report.latency_s,
                    "cycles": report.cycles,
                    "energy_pj": report.energy_pj if typed.energy_pj is not None else None,
                    "energy_method": typed.energy_method,
                    "calibration": typed.calibration,
                    "target": typed.target,
                    "dram_bytes": report.dram_bytes,
                    "utilization": report.utilization,
                    "evaluated": result.evaluated,
                    "pruned": result.pruned,
                    "invalid": result.invalid,
                    "pareto_points": len(result.pareto),
                    "wall_s": result.wall_s,
                    **_certificate(result),
                    "mapping": (
                        result.mapping.name
                        if target.kind == "gpu"
                        else mapping_to_dict(result.mapping)
                    ),
                    "output": output,
                    "explain": result.explain(),
                },
                default=float,
            )
        )
        return
    if target.kind == "gpu":
        click.echo(f"mapping      {result.mapping.name}")
    _echo_totals(report, typed)
    click.echo(f"evaluated    {result.evaluated}")
    click.echo(f"pruned       {result.pruned}")
    click.echo(f"invalid      {result.invalid}")
    click.echo(f"pareto       {len(result.pareto)}")
    click.echo(f"wall_s       {result.wall_s:.3f}")
    certificate = _certificate(result)
    if certificate["lower_bound"] is not None:
        click.echo(f"lower_bound  {certificate['lower_bound']:.6g}  ({objective})")
        gap = certificate["gap"]
        proof = "  (exhaustive: optimal in the space)" if certificate["optimal"] else ""
        click.echo(f"gap          {'n/a' if gap is None else f'{gap:.2%}'}{proof}")
    if output is not None:
        click.echo(f"written      {output}")
    click.echo("")
    click.echo(result.explain())


def _certificate(result) -> dict:
    """The search's lower bound on its objective, the best's gap to it (best / bound - 1)
    and whether the search proved it optimal in the space (None on a GPU's tiling grid)."""
    import math

    bound = getattr(result, "lower_bound", None)
    bound = bound if bound is not None and math.isfinite(bound) else None  # a GPU: no bound
    gap = getattr(result, "gap", None)
    return {
        "lower_bound": bound,
        "gap": gap if gap is not None and math.isfinite(gap) else None,
        "optimal": bool(getattr(result, "optimal", False)),
    }


@main.command()
@click.argument("paper", type=click.Choice(["fusemax"]))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--end-to-end",
    is_flag=True,
    help="one whole layer: attention plus its six matrix products (Q, K, V, Z, FFN1, FFN2)",
)
@click.option(
    "--pareto",
    "pareto_study",
    is_flag=True,
    help="the area-latency study (Fig. 12): PE_dim 16..512 at 256K tokens, four models",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="with --pareto: write the latency-vs-area figure as HTML (plotly)",
)
def reproduce(
    paper: str, fmt: str, end_to_end: bool, pareto_study: bool, plot: Path | None
) -> None:
    """Reproduce a paper's results through the general model, beside the published values."""
    from einsim.simulator.spatial.reproduce import headline, iso_area
    from einsim.simulator.spatial.reproduce import reproduce as run

    if plot is not None and not pareto_study:
        raise click.UsageError("--plot draws the Pareto study: add --pareto")
    if pareto_study:
        _reproduce_pareto(fmt, plot)
        return
    table = run(end_to_end=end_to_end)
    columns = [
        "model",
        "seq_len",
        "config",
        "latency_s",
        "energy_pj",
        "util_2d",
        "util_1d",
        "dram_bytes",
        "published_latency_s",
        "published_energy_pj",
    ]
    if end_to_end:
        columns += ["matmul_latency_s", "matmul_energy_pj", "e2e_latency_s", "e2e_energy_pj"]
    if fmt == "csv":
        click.echo(table[columns].to_csv(index=False), nl=False)
        return
    if fmt == "json":
        click.echo(table[columns].to_json(orient="records"))
        return
    shown = table[[*columns, "latency_ratio"]]
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    summary = headline(table)
    points = table.groupby(["model", "seq_len"]).ngroups
    paper_points = table.dropna(subset=["published_latency_s"])
    worst = paper_points.latency_ratio.loc[(paper_points.latency_ratio - 1).abs().idxmax()]
    click.echo(
        f"\nFuseMax vs FLAT, mean of per-point latency ratios over {points} points: "
        f"{summary['speedup_vs_flat']:.2f}x (published 6.7x); energy "
        f"{summary['energy_vs_flat']:.1%} of FLAT's (published 79%)"
    )
    click.echo(
        f"worst latency ratio to the published value over {len(paper_points)} points: {worst:.4f}"
    )
    areas = iso_area()
    click.echo("\nArea (mm^2, 45 nm): FuseMax's and FLAT's accelerators side by side")
    click.echo(areas.to_string(float_format=lambda v: f"{v:.2f}"))
    total = areas.loc["total"]
    arrays = areas.drop(index=["total", "GB"], errors="ignore").sum()
    click.echo(
        f"The arrays differ by {abs(arrays.iloc[0] - arrays.iloc[1]):.2f} mm^2 (FuseMax adds a "
        "max unit to every 2D PE, FLAT an exponential unit to every 1D PE); the totals differ "
        f"by {total.iloc[1] - total.iloc[0]:+.2f} mm^2, FLAT's buffer being twice FuseMax's "
        "(32 vs 16 MiB, at the calibrated density of benchmarks/calibrate_buffer_area.py)"
    )
    if end_to_end:
        e2e = headline(table, end_to_end=True)
        click.echo(
            f"End to end (attention + the layer's six matmuls), over {points} points: "
            f"{e2e['speedup_vs_flat']:.2f}x (published 5.3x); energy "
            f"{e2e['energy_vs_flat']:.1%} of FLAT's (published 83%)"
        )


def _reproduce_pareto(fmt: str, plot: Path | None) -> None:
    """`reproduce fusemax --pareto`: the area-latency table, and the figure with --plot."""
    from einsim.simulator.spatial.reproduce import pareto

    table = pareto()
    columns = [
        "model", "pe_dim", "buffer_bytes", "latency_s", "compute_s", "memory_s", "dram_bytes",
        "area_mm2", "published_latency_s", "published_area_mm2",
    ]  # fmt: skip
    columns += [c for c in table.columns if c.startswith("area_") and c != "area_mm2"]
    if fmt == "csv":
        click.echo(table[columns].to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table[columns].to_json(orient="records"))
    else:
        click.echo(table[columns[:10]].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        published = table.dropna(subset=["published_latency_s"])
        for row in published.itertuples():
            click.echo(
                f"{row.model} PE_dim {row.pe_dim}: latency {row.latency_s:.6g} s "
                f"(published {row.published_latency_s:.6g}, "
                f"{row.latency_s / row.published_latency_s - 1:+.2%}), area "
                f"{row.area_mm2:.4g} mm^2 (published {row.published_area_mm2:.4g}, "
                f"{row.area_mm2 / row.published_area_mm2 - 1:+.2%})"
            )
    if plot is not None:
        from einsim.dashboard.pareto import pareto_figure

        pareto_figure(table).write_html(plot, include_plotlyjs=True)
        click.echo(f"written {plot}", err=fmt != "table")


def check_block_defaults(
    name: str, shape: dict[str, int] | None, given: dict[str, object]
) -> dict[str, int]:
    """The test-case parameters `einsim check --shape` resets to the variant's defaults.

    When the shape sets M or P, the first test case's block sizes are as small as its tiny
    ranks (flexprefill's BS=2), which at a real shape make block-by-block Einsums cubic
    (N = M / BS blocks, N^3 points); like the case's M0 they give way to the variant's
    default. A block size is a case parameter that, set to its default, changes the size of
    a partition's lower rank (MB in `M -> N, MB`) of the built cascade; it is reset only when
    the default fits the shape (<= the M and P given) and `--param` does not set it.
    """
    from einsim.workloads import ATTENTION
    from einsim.workloads.attention import attention, parameters

    if not shape or not {"M", "P"} & set(shape):
        return {}
    canonical = ATTENTION.canonical(name)
    cases = ATTENTION.entry(canonical).meta.get("cases") or ()
    if not cases:
        return {}
    base = {**cases[0][0], **given}
    limit = min(int(shape[k]) for k in ("M", "P") if k in shape)

    def lower_sizes(params: dict) -> dict:
        cascade = attention(canonical, **params)
        lowers = {p.lower for p in cascade.partitions}
        return {k: v for k, v in cascade.default_sizes if k in lowers}

    blocks: dict[str, int] = {}
    for key, default in parameters(canonical).items():
        value = base.get(key)
        if key in given or isinstance(value, bool) or not isinstance(value, int):
            continue
        if isinstance(default, bool) or not isinstance(default, int) or default == value:
            continue
        if default > limit:
            continue
        try:
            if lower_sizes(base) != lower_sizes({**base, key: default}):
                blocks[key] = default
        except SpecError:
            continue
    return blocks


@main.command()
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="variant parameter")
@click.option("--seed", default=0, show_default=True, help="random seed of the inputs")
@click.option(
    "--shape",
    default=None,
    metavar="M=P=4096,E=F=64",
    help="rank sizes replacing the variant's test case (with M or P: its small M0 dropped and "
    "its block sizes back to the variant's defaults)",
)
def check(name: str, params: tuple[str, ...], seed: int, shape: str | None) -> None:
    """Run variant NAME (each form) on random data against its direct formula."""
    from einsim.workloads import check as check_variant

    sizes = _parse_shape(shape) if shape else None
    given = _parse_params(params)
    blocks = check_block_defaults(name, sizes, given)
    result = check_variant(name, seed=seed, shape=sizes, **blocks, **given)
    ran = ", ".join(f"{k}={v}" for k, v in [*result.shape, *blocks.items()])
    click.echo(f"{result.variant} on random inputs ({ran}) vs its direct formula")
    for form, error in result.max_error:
        click.echo(f"{form:<14}  max error {error:.3e}  {'ok' if error <= 1e-9 else 'MISMATCH'}")
    if not result.ok:
        sys.exit(1)


@main.command(name="sweep")
@click.argument("spec")
@click.option("-o", "--output", required=True, help="output directory (a Parquet dataset)")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="a Dask scheduler")
@click.option("--workers", type=int, default=None, help="local worker processes (default: 1)")
@click.option("--chunk-size", type=int, default=None, help="points per task")
@click.option("--overwrite", is_flag=True, help="replace the results of a different sweep")
@click.option(
    "--max-points",
    type=click.IntRange(min=1),
    default=None,
    help="refuse a spec of more points than this (default 1,000,000)",
)
def sweep_command(spec, output, scheduler, workers, chunk_size, overwrite, max_points):
    """Evaluate every point of the sweep SPEC (a YAML file or a bundled example) into a
    Parquet dataset; rerun the same command to resume. One sweep writes to a directory
    at a time; exits 1 when every point evaluated was invalid or raised."""
    import os
    import signal
    import warnings

    from einsim.sweeps import sweep
    from einsim.sweeps.spec import MAX_POINTS, SweepWarning

    def show(message, category, *_args, **_kwargs):
        prefix = "warning" if issubclass(category, SweepWarning) else category.__name__
        click.echo(f"einsim: {prefix}: {str(message).splitlines()[0]}", err=True)

    parent = os.getpid()

    def terminated(signum, _frame):
        if os.getpid() != parent:  # a forked pool worker: die as SIGTERM means
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SweepWarning)
            warnings.showwarning = show
            result = sweep(
                spec,
                output,
                scheduler=scheduler,
                workers=workers,
                chunk_size=chunk_size,
                overwrite=overwrite,
                max_points=max_points or MAX_POINTS,
            )
    except KeyboardInterrupt as stop:
        how = "terminated" if isinstance(stop, _Terminated) else "interrupted"
        click.echo(f"einsim: {how}; finished chunks are kept, rerun to resume", err=True)
        sys.exit(143 if isinstance(stop, _Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(result.summary())
    if result.all_failed:
        click.echo(
            f"einsim: every point evaluated failed ({result.invalid:,} invalid, "
            f"{result.errors:,} raised); see the reason and error columns in {output}",
            err=True,
        )
        sys.exit(1)


class _Terminated(KeyboardInterrupt):
    """SIGTERM during a sweep: unwound like Ctrl+C, so the output's lock is released."""


@main.command()
@click.option("--port", type=int, default=8050, show_default=True, help="port to serve on (0: any)")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to serve on; anything but loopback exposes the dashboard, which has no "
    "authentication, to the network",
)
@click.option("--data", default=None, metavar="PATH", help="sweep results (Parquet) to explore")
@click.option(
    "--allow",
    multiple=True,
    metavar="DIR",
    help="a folder the page's path fields may read (repeatable); besides --data's folder "
    "and the bundled presets, nothing else is readable",
)
@click.option("--debug", is_flag=True, help="Dash's debug server (reloads; loopback only)")
def dashboard(port: int, host: str, data: str | None, allow: tuple[str, ...], debug: bool) -> None:
    """Serve the interactive dashboard: design points, cascades, sweeps, GPU validation.

    It is served by waitress; path fields read only inside --data's folder, --allow folders
    and the bundled presets; requests whose Host header is not this server's are refused.
    """
    from einsim.dashboard import security
    from einsim.dashboard.app import create_app

    if data is not None and not Path(data).expanduser().exists():
        raise SpecError(f"--data {data!r}: no such file or directory")
    for folder in allow:
        if not Path(folder).expanduser().is_dir():
            raise SpecError(f"--allow {folder!r}: not a directory")
    if not 0 <= port <= 65535:
        raise SpecError(f"--port {port}: expected 0 to 65535")
    app = create_app(data, allow=allow)
    warning = security.no_authentication_warning(host)
    if debug:
        if warning:
            raise SpecError(f"--debug serves Dash's debug server, on loopback only, not {host!r}")
        click.echo(f"einsim dashboard (debug) on http://{host}:{port}/ (Ctrl+C stops it)")
        security.bind(app, host, port)
        app.run(host=host, port=port, debug=True)
        return
    try:
        server = security.make_server(app, host, port)
    except OSError as error:
        raise SpecError(f"--host {host!r} --port {port}: cannot listen ({error})") from None
    if warning:
        click.echo(warning, err=True)
    shown = f"[{host}]" if ":" in host else host
    bound = app.server.config[security.BIND_KEY][1]
    click.echo(f"einsim dashboard on http://{shown}:{bound}/ (Ctrl+C stops it)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@main.command(name="validate-gpu")
@click.option("--variant", default="fusemax", show_default=True, help="attention variant")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="variant parameter")
@click.option(
    "--shapes", required=True, metavar="B=4,H=16,E=128,F=128,M=4096,P=4096;...", help="shapes"
)
@click.option(
    "--mappings",
    default="grid",
    show_default=True,
    metavar="grid | fused:Br=128,Bc=64,stages=2,warps=4;unfused:...",
    help="GPU mappings, ';'-separated",
)
@click.option("--arch", "arch_name", default=None, help="GPU preset (default: from the device)")
@click.option("--dtype", type=click.Choice(["bf16", "fp16"]), default="bf16", show_default=True)
@click.option("--warmup", default=3, show_default=True)
@click.option("--repeats", default=20, show_default=True)
@click.option("--no-torch", is_flag=True, help="do not time torch's scaled_dot_product_attention")
@click.option(
    "--search/--no-search",
    default=True,
    show_default=True,
    help="also run the mapper's pick for each shape (search_gpu over the tiling grid)",
)
@click.option("-o", "--output", required=True, help="results CSV")
def validate_gpu_command(
    variant, params, shapes, mappings, arch_name, dtype, warmup, repeats, no_torch, search, output
):
    """Run GPU mappings with CuPy, time them, and compare with the GPU model's predictions."""
    from einsim.gpu_validate.validate import parse_mappings, parse_shapes, summarize, validate

    shape_list, mapping_list = parse_shapes(shapes), parse_mappings(mappings)
    frame = validate(
        variant,
        shape_list,
        mapping_list,
        params=_parse_params(params),
        arch=arch_name,
        dtype=dtype,
        warmup=warmup,
        repeats=repeats,
        torch_sdpa=not no_torch,
        searched=search,
        progress=lambda text: click.echo(f"  {text}", err=True),
    )
    frame.to_csv(output, index=False)
    summary = summarize(frame)
    click.echo(
        f"{len(frame)} rows -> {output}; MAPE {summary['mape']:.1%}, median Spearman "
        f"{summary['median_spearman']:.2f}, predicted best within 10% of measured best in "
        f"{summary['best_within_10pct']:.0%} of {summary['problems']} problems"
    )


def _register_model_commands() -> None:
    """`einsim estimate` and `einsim compare` (whole models: einsim/cli_compare.py)."""
    from einsim.cli_compare import compare_command, estimate_command

    main.add_command(estimate_command)
    main.add_command(compare_command)


_register_model_commands()

if __name__ == "__main__":
    main()
