"""ganzoo: a model zoo for image generative models in PyTorch.

This module is the public facade, and nothing under ``ganzoo`` imports it. ``import ganzoo`` is
cheap: the names below are looked up on first use (PEP 562), so it imports neither torch nor a
family module. Built-ins and plugins load on the first registry query (``list_models``,
``build``, ...). Where each name lives:

- ``build``, ``model_info``, ``from_pretrained``: :mod:`ganzoo._factory`;
- ``list_*`` and ``build_loss`` / ``build_dataset`` / ``build_metric``: :mod:`ganzoo.registry`;
- ``evaluate``: :mod:`ganzoo.metrics`.
"""

from __future__ import annotations

from ._version import __version__

# typing.TYPE_CHECKING without importing typing (a third of a cheap `import ganzoo`): type
# checkers take any `if TYPE_CHECKING:` block as true.
TYPE_CHECKING = False

__all__ = [
    "__version__", "build", "build_loss", "build_dataset", "build_metric", "list_models",
    "list_losses", "list_datasets", "list_metrics", "model_info", "from_pretrained", "evaluate",
]

_HOMES = {
    "build": "_factory", "model_info": "_factory", "from_pretrained": "_factory",
    "list_models": "registry", "list_losses": "registry", "list_datasets": "registry",
    "list_metrics": "registry", "build_loss": "registry", "build_dataset": "registry",
    "build_metric": "registry", "evaluate": "metrics",
}

if TYPE_CHECKING:
    from ._factory import build, from_pretrained, model_info
    from .metrics import evaluate
    from .registry import (build_dataset, build_loss, build_metric, list_datasets, list_losses,
                           list_metrics, list_models)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        # Sub-packages (ganzoo.models, ...) resolve as attributes once imported; before that,
        # this is Python's own error.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__ rather than importlib.import_module: importlib is not loaded at start-up.
    value = getattr(__import__(f"{__name__}.{home}", fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
