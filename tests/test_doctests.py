"""The worked examples in docstrings are run, so they stay true."""

import doctest
import importlib
import pkgutil

import pytest

import einsim


def _modules():
    names = ["einsim"]
    for package in ("einsim.einsum", "einsim.workloads", "einsim.simulator", "einsim.mapper"):
        module = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, f"{package}.")]
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_import_einsim_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, einsim; heavy = {'dash', 'plotly', 'cupy', 'numba', 'dask'} & "
        "set(m.split('.')[0] for m in sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert einsim.__version__
