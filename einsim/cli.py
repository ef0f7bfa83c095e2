"""The `einsim` command. Bad input exits with status 2 and one line on stderr."""

from __future__ import annotations

import json
import sys

import click

from einsim.einsum import EinsimError, SpecError


def _parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    """`--param M0=64` -> {"M0": 64}; values are ints, floats or strings."""
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--param {pair!r}: expected KEY=VALUE, e.g. M0=64")
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return params


class _Group(click.Group):
    """Turns einsim's own errors into one line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EinsimError as error:
            message = str(error).splitlines()
            # A parse error keeps its caret lines; everything else is one line.
            click.echo(f"einsim: error: {message[0]}", err=True)
            for line in message[1:]:
                click.echo(line, err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="einsim")
def main() -> None:
    """einsim: simulate attention cascades on accelerators and explore their mappings."""


def _build(name: str, params: tuple[str, ...]):
    from einsim.workloads import attention

    return attention(name, **_parse_params(params))


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
    """List the registered attention variants with their parameters."""
    from einsim.workloads import ATTENTION, parameters

    for entry in ATTENTION.entries():
        params = ", ".join(f"{k}={v}" for k, v in parameters(entry.name).items())
        aliases = f" (alias: {', '.join(entry.aliases)})" if entry.aliases else ""
        click.echo(f"{entry.name}{aliases}: {entry.summary}" + (f" [{params}]" if params else ""))


if __name__ == "__main__":
    main()
