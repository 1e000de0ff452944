"""Which extra each heavy command needs, checked before the command imports anything of it.

``pip install inferloop`` is the light client: ``produce``, ``predictions``, ``feedback``, ``dlq`` and ``topics`` run
on it. The other commands need parts the core install leaves out; each calls :func:`require` first, which fails
with the extra to install (``pip install 'inferloop[worker]'``) rather than with an ImportError's traceback from
halfway down an import chain. The modules listed for an extra are the import names of the distributions
pyproject.toml lists for it (``tests/unit/cli/test_light_cli.py`` checks that they agree).
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

from cli.app import fail
from inferloop.errors import MissingExtra

# The top-level modules of each extra's own distributions (in pyproject.toml's order of extras), and the extras it
# includes: `demo` needs the worker, the trainer and the local stack.
MODULES: dict[str, tuple[str, ...]] = {
    "json-logs": ("pythonjsonlogger",),
    "worker": ("aiokafka", "faust", "mode", "fsspec", "numpy", "PIL", "prometheus_client", "tritonclient"),
    "trainer": (
        "numpy",
        "onnx",
        "onnxruntime",
        "onnxscript",
        "PIL",
        "prometheus_client",
        "sklearn",
        "torch",
        "tritonclient",
    ),
    "local": ("numpy", "pytriton", "onnxruntime", "yaml"),
    "demo": ("matplotlib",),
}
INCLUDES: dict[str, tuple[str, ...]] = {
    "worker": ("json-logs",),
    "trainer": ("json-logs",),
    "demo": ("worker", "trainer", "local"),
}


def modules_of(extra: str) -> list[str]:
    """Every top-level module ``extra`` brings, those of the extras it includes too, each once."""
    found = [*MODULES[extra]]
    for included in INCLUDES.get(extra, ()):
        found += [m for m in modules_of(included) if m not in found]
    return found


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` this environment cannot import (looked up, not imported: nothing heavy loads)."""
    return [module for module in modules_of(extra) if not installed(module)]


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here."""
    if module in sys.modules:  # imported already (faust's lazy module has no __spec__, which find_spec refuses)
        return sys.modules[module] is not None
    return find_spec(module) is not None


def require(command: str, extra: str) -> None:
    """Exit 1 naming ``extra`` when any module it brings is missing, before ``command`` imports one of them."""
    missing = missing_modules(extra)
    if missing:
        fail(str(MissingExtra(f"inferloop {command}", extra, ", ".join(missing))))
