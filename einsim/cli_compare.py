"""`einsim estimate` and `einsim compare`: whole-model estimates on the command line.

Registered on the `einsim` group by `einsim.cli`; each command reads its options, calls
`einsim.model_estimate` and prints or writes what it returns.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from einsim.einsum import SpecError

_FORMATS = click.Choice(["table", "csv", "json"])


def _list(text: str, option: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise SpecError(f"{option} {text!r}: expected a comma-separated list")
    return items


def _ints(text: str, option: str) -> list[int]:
    values = []
    for item in _list(text, option):
        if not item.isdigit() or int(item) < 1 or int(item) > 2**31 - 1:
            raise SpecError(f"{option} {item!r}: expected a positive integer")
        values.append(int(item))
    return values


def _write_table(frame, path: Path) -> None:
    """CSV, JSON (records) or Parquet by the extension."""
    ext = path.suffix.lower()
    if ext == ".csv":
        frame.to_csv(path, index=False)
    elif ext == ".json":
        path.write_text(frame.to_json(orient="records", indent=1, double_precision=15))
    elif ext == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise SpecError(f"-o {path}: the extension must be .csv, .json or .parquet")


def _attention_option(text: str | None):
    return [None] if text is None else _list(text, "--attention")


def _fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def _fmt_energy(pj) -> str:
    if pj is None or not math.isfinite(pj):
        return "not modelled"
    return f"{pj * 1e-9:.4g} mJ"


@click.command("estimate")
@click.argument("model")
@click.option("--target", "target", required=True, help="preset or spec path, e.g. h100_sxm")
@click.option(
    "--phase", type=click.Choice(["prefill", "decode"]), default="prefill", show_default=True
)
@click.option(
    "--seq", "seq_len", type=int, default=4096, show_default=True, help="tokens (decode: context)"
)
@click.option("--batch", type=int, default=None, help="sequences (default: the model's)")
@click.option("--attention", default=None, help="a form (fusemax_1pass, ...) or a variant")
@click.option("--mapping", default=None, help="attention mapping: a name, a GPU tiling or 'search'")
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="write the per-layer, per-operator breakdown (.csv, .json, .parquet)",
)  # fmt: skip
def estimate_command(model, target, phase, seq_len, batch, attention, mapping, fmt, output):
    """Estimate MODEL (a zoo model) on one target: TTFT or TPOT, tokens/s, energy, DRAM."""
    from einsim.model_estimate import estimate

    result = estimate(model, target, phase, seq_len, batch, attention=attention, mapping=mapping)
    frame = result.breakdown
    if output is not None:
        _write_table(frame, output)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        summary = result.summary()
        click.echo(
            json.dumps({**summary, "breakdown": frame.to_dict(orient="records")}, default=str)
        )
    else:
        what = "time to first token" if phase == "prefill" else "time per output token"
        click.echo(
            f"{result.model} on {result.target}, {phase}, seq {seq_len}, batch {result.batch}, "
            f"attention {result.attention}"
        )
        click.echo(f"  {what}: {_fmt_s(result.latency_s)}; {result.tokens_per_s:.4g} tokens/s")
        click.echo(f"  energy per token: {_fmt_energy(result.energy_per_token_pj)}")
        click.echo(
            f"  DRAM/HBM traffic {result.dram_bytes / 1e9:.4g} GB; weights "
            f"{result.weight_bytes / 1e9:.4g} GB, KV cache {result.kv_cache_bytes / 1e9:.4g} GB"
        )
        click.echo("  " + _fit_line(result))
        totals = frame.groupby("operator", sort=False)[["latency_s", "dram_bytes", "flops"]].sum()
        totals["share"] = totals.latency_s / totals.latency_s.sum()
        click.echo(totals.to_string(float_format=lambda v: f"{v:.4g}"))
        for note in result.notes:
            click.echo(f"note: {note}")
        if output is not None:
            click.echo(f"written {output}")
    if not result.valid:
        click.echo(f"einsim: not every operator could be costed: {result.reasons[0]}", err=True)
        sys.exit(1)


def _fit_line(result) -> str:
    chip = "fit" if result.weights_fit_on_chip else "do not fit"
    text = f"weights {chip} on chip ({result.on_chip_bytes / 2**20:.4g} MiB)"
    if result.fits_memory is None:
        return text + "; off-chip capacity not modelled by the spec"
    mem = "fit" if result.fits_memory else "DO NOT FIT"
    return text + f"; weights + KV cache {mem} in memory ({result.memory_bytes / 1e9:.4g} GB)"


@click.command("compare")
@click.argument("model")
@click.option(
    "--targets",
    default="fusemax_cloud,flat_cloud,h100_sxm",
    show_default=True,
    help="comma-separated presets or spec paths",
)
@click.option("--attention", default=None, help="comma-separated forms or variants")
@click.option("--seq", "seqs", default="4096", show_default=True, help="comma-separated")
@click.option("--phase", "phases", default="prefill,decode", show_default=True)
@click.option("--batch", type=int, default=None, help="sequences (default: the model's)")
@click.option(
    "--mapping", default=None,
    help="'bundled' (no mapper search), 'best' (bundled vs mapper everywhere) or 'search'",
)  # fmt: skip
@click.option(
    "--baseline", default=None, help="the target speedups are against (default: the first)"
)
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="write the matrix (.csv, .json, .parquet)",
)  # fmt: skip
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="latency bars and latency vs seq_len: .html (plotly), .png/.svg (needs kaleido)",
)  # fmt: skip
def compare_command(
    model, targets, attention, seqs, phases, batch, mapping, baseline, fmt, output, plot
):
    """Head-to-head: MODEL on several targets, attentions and sequence lengths."""
    from einsim.model_estimate import compare, write_figures

    phase_list = _list(phases, "--phase")
    for phase in phase_list:
        if phase not in ("prefill", "decode"):
            raise SpecError(f"--phase {phase!r}: expected prefill or decode")
    table = compare(
        model, _list(targets, "--targets"), _attention_option(attention), _ints(seqs, "--seq"),
        phase_list, batch=batch, baseline=baseline, mapping=mapping,
    )  # fmt: skip
    if output is not None:
        _write_table(table, output)
    written = write_figures(table, plot) if plot is not None else []
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", double_precision=15))
    else:
        click.echo(_table_text(table))
        base = baseline or table.target.iloc[0]
        click.echo(
            f"speedup: {base}'s latency / the target's at the same attention, phase and seq. "
            "prefill latency = TTFT, decode = TPOT at a KV cache of seq tokens."
        )
        click.echo(
            "GPU rows: uncalibrated model (calibration constants 1.0), matrix products as "
            "rooflines, energy not modelled (n/m)."
        )
        for path in [output, *written]:
            if path is not None:
                click.echo(f"written {path}")
    if not table.valid.all():
        bad = table[~table.valid].iloc[0]
        click.echo(f"einsim: {bad.target} {bad.phase} {bad.seq_len}: {bad.reason}", err=True)
        sys.exit(1)


def _table_text(table) -> str:
    shown = table.assign(
        latency=table.latency_s.map(_fmt_s),
        speedup=table.speedup.map(lambda v: f"{v:.3g}x"),
        tok_per_s=table.tokens_per_s.map(lambda v: f"{v:.4g}"),
        mJ_per_token=table.energy_per_token_pj.map(
            lambda v: "n/m" if not math.isfinite(v) else f"{v * 1e-9:.3g}"
        ),
        dram_GB=(table.dram_bytes / 1e9).map(lambda v: f"{v:.4g}"),
        fits=table.fits_memory.map({True: "yes", False: "NO", None: "-"}).fillna("-"),
    )
    columns = ["attention", "phase", "seq_len", "target", "latency", "speedup", "tok_per_s"]
    columns += ["mJ_per_token", "dram_GB", "fits"]
    shown = shown.sort_values(["attention", "phase", "seq_len"], kind="stable")
    return shown[columns].to_string(index=False)
