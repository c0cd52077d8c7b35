"""One registry class for models, losses, datasets and metrics.

Built-ins are the modules of a ganzoo sub-package (``ganzoo.models`` and so on), imported on the
first query that needs an entry (``build``, ``entry``, ``in``) so that ``import ganzoo`` stays
cheap. Listing names reads them from the sub-package's source instead (the decorated
functions, found with ``ast``), so ``ganzoo list`` imports neither the families nor torch.

Third-party packages add entries through the entry-point groups ``ganzoo.models``,
``ganzoo.losses``, ``ganzoo.datasets`` and ``ganzoo.metrics``: each entry point names a factory
``(**kwargs) -> object``. Entry points are read lazily (names only) and cached; ``build``
imports only the one it needs.

Rules (after fsspec's and xarray's plugin registries):

- a name clash keeps the built-in and warns, naming both distributions; two plugins that clash
  warn too, and the one whose distribution name sorts first wins;
- a plugin that fails to import warns when listed and raises a chained error when built; the
  rest of the registry keeps working;
- an unknown name raises ``KeyError`` listing the closest matches.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import did_you_mean

__all__ = ["Registry", "Entry", "MODELS", "LOSSES", "DATASETS", "METRICS", "PluginWarning",
           "list_models", "list_losses", "list_datasets", "list_metrics", "build_loss",
           "build_dataset", "build_metric"]


class PluginWarning(UserWarning):
    """A plugin clashes with another entry or cannot be imported."""


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any] | None  # None until an entry point is loaded
    module: str
    distribution: str  # "ganzoo" for built-ins
    entry_point: importlib.metadata.EntryPoint | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class Registry:
    def __init__(self, kind: str, package: str, group: str):
        self.kind = kind  # "model", "loss", ...
        self.plural = "losses" if kind == "loss" else kind + "s"
        self.package = package  # built-ins: every public module of this package
        self.group = group  # entry-point group
        self._builtins: dict[str, Entry] = {}
        self._plugins: dict[str, Entry] | None = None
        self._builtins_loaded = False
        self._loading = False
        self._scanned: dict[str, str] | None = None  # built-in names -> modules, from source

    # -- registration -------------------------------------------------------------------------
    def register(self, fn: Callable | None = None, *, name: str | None = None, **metadata):
        """Decorator: ``@register`` or ``@register(name=..., pretrained={...})``."""

        def deco(f):
            key = name or f.__name__
            if key in self._builtins and self._builtins[key].factory is not f:
                raise ValueError(f"{self.kind} '{key}' is registered twice "
                                 f"({self._builtins[key].module} and {f.__module__})")
            self._builtins[key] = Entry(key, f, f.__module__, "ganzoo", metadata=metadata)
            return f

        return deco(fn) if fn is not None else deco

    # -- discovery ----------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded or self._loading:
            return
        self._loading = True
        try:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._builtins_loaded = True
        finally:
            self._loading = False

    def _scan_builtins(self) -> dict[str, str] | None:
        """Built-in names and their modules, read from the package's source without importing
        it: every function decorated ``@register_<kind>``, ``@register_<kind>(name=...)`` or
        ``@<KINDS>.register(...)``. None when the source cannot be read (then the package is
        imported). tests/test_registry.py checks that this equals what importing registers."""
        if self._scanned is not None:
            return self._scanned
        spec = importlib.util.find_spec(self.package)
        roots = list(spec.submodule_search_locations or []) if spec else []
        decorators = {f"register_{self.kind}", f"{self.plural.upper()}.register"}
        found: dict[str, str] = {}
        try:
            for root in map(Path, roots):
                for path in sorted(root.rglob("*.py")):
                    rel = path.relative_to(root).with_suffix("").parts
                    module = ".".join((self.package, *rel)).removesuffix(".__init__")
                    for name in _registered_names(path.read_text(encoding="utf-8"),
                                                  decorators):
                        found.setdefault(name, module)
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
        if not found:  # no source at all (a zipped or compiled-only install)
            return None
        self._scanned = found
        return found

    def _load_plugins(self) -> dict[str, Entry]:
        if self._plugins is not None:
            return self._plugins
        found: dict[str, list[Entry]] = {}
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            found.setdefault(ep.name, []).append(
                Entry(ep.name, None, ep.module, dist, entry_point=ep))
        plugins = {}
        for name, entries in sorted(found.items()):
            # Two installs of the same distribution (e.g. a stale egg-info) are not a clash.
            entries = sorted({e.distribution: e for e in entries}.values(),
                             key=lambda e: e.distribution.lower())
            if len(entries) > 1:
                warnings.warn(
                    f"ganzoo {self.kind} '{name}' is provided by several plugins "
                    f"({', '.join(e.distribution for e in entries)}); using "
                    f"'{entries[0].distribution}'", PluginWarning, stacklevel=3)
            plugins[name] = entries[0]
        self._plugins = plugins
        return plugins

    def refresh(self) -> None:
        """Forget cached entry points (after ``pip install`` of a plugin in this process)."""
        self._plugins = None
        importlib.invalidate_caches()

    def _entries(self, warn: bool = True,
                 builtins: dict[str, Entry] | None = None) -> dict[str, Entry]:
        """Built-ins (imported, unless given) and plugins; a plugin never replaces a
        built-in."""
        if builtins is None:
            self._load_builtins()
            builtins = self._builtins
        entries = dict(builtins)
        for name, entry in self._load_plugins().items():
            if name in entries:
                if warn:
                    warnings.warn(
                        f"ganzoo {self.kind} '{name}' from plugin '{entry.distribution}' clashes "
                        f"with the built-in from 'ganzoo'; keeping the built-in",
                        PluginWarning, stacklevel=3)
                continue
            entries[name] = entry
        return entries

    @staticmethod
    def _importable(entry: Entry) -> bool:
        if entry.error is not None:
            return False
        if entry.factory is not None:
            return True
        try:
            return importlib.util.find_spec(entry.module.split(".")[0]) is not None
        except (ImportError, ValueError):
            return False

    # -- queries ------------------------------------------------------------------------------
    def _listed(self) -> dict[str, Entry]:
        """What :meth:`names` lists: the imported entries once the built-ins are loaded, else
        the scanned built-in names (placeholders), entries registered in this process and the
        plugins."""
        if self._builtins_loaded:
            return self._entries()
        scanned = self._scan_builtins()
        if scanned is None:
            return self._entries()
        builtins = {name: Entry(name, _not_imported, module, "ganzoo")
                    for name, module in scanned.items()}
        return self._entries(builtins={**builtins, **self._builtins})

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by an fnmatch pattern. Broken plugins warn."""
        out = []
        for name, entry in self._listed().items():
            if not self._importable(entry):
                reason = entry.error or "its module cannot be found"
                warnings.warn(f"ganzoo {self.kind} plugin '{name}' from '{entry.distribution}' "
                              f"cannot be imported ({reason}); skipping it", PluginWarning,
                              stacklevel=2)
                continue
            if pattern is None or fnmatch.fnmatchcase(name, pattern):
                out.append(name)
        return sorted(out)

    def __contains__(self, name: str) -> bool:
        return name in self._entries(warn=False)

    def entry(self, name: str) -> Entry:
        entries = self._entries(warn=False)
        if name not in entries:
            hint = did_you_mean(name, entries, sentence=True)
            raise KeyError(f"Unknown ganzoo {self.kind} '{name}'.{hint} "
                           f"See ganzoo.list_{self.plural}() for all {len(entries)}.")
        return entries[name]

    def get(self, name: str) -> Callable[..., Any]:
        """The factory for ``name``, importing its plugin if needed."""
        entry = self.entry(name)
        if entry.factory is None:
            try:
                entry.factory = entry.entry_point.load()
            except Exception as e:  # noqa: BLE001 - any import-time failure of a plugin
                entry.error = e
                raise ImportError(
                    f"ganzoo {self.kind} '{name}' from plugin '{entry.distribution}' "
                    f"(entry point {entry.entry_point.value}) failed to load: {e}") from e
            if not callable(entry.factory):
                raise TypeError(f"entry point {entry.entry_point.value} for ganzoo {self.kind} "
                                f"'{name}' is not callable")
        return entry.factory

    def build(self, name: str, **kwargs) -> Any:
        return self.get(name)(**kwargs)


def _not_imported(**kwargs):  # the factory of a listed built-in that is not imported yet
    raise AssertionError("a scanned registry entry is never built")


def _registered_names(source: str, decorators: set[str]) -> list[str]:
    """Names that the decorators ``decorators`` (dotted names) register at the top level of
    ``source``: the function's name, or the decorator's ``name=`` argument."""
    names = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call is not None else deco
            if ast.unparse(target) not in decorators:
                continue
            name = node.name
            for kw in call.keywords if call is not None else ():
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    name = kw.value.value
            names.append(name)
    return names


MODELS = Registry("model", "ganzoo.models", "ganzoo.models")
LOSSES = Registry("loss", "ganzoo.losses", "ganzoo.losses")
DATASETS = Registry("dataset", "ganzoo.datasets", "ganzoo.datasets")
METRICS = Registry("metric", "ganzoo.metrics", "ganzoo.metrics")

register_model = MODELS.register
register_loss = LOSSES.register
register_dataset = DATASETS.register
register_metric = METRICS.register


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model presets (built-ins and plugins), sorted; ``pattern`` is fnmatch-style."""
    return MODELS.names(pattern)


def list_losses(pattern: str | None = None) -> list[str]:
    return LOSSES.names(pattern)


def list_datasets(pattern: str | None = None) -> list[str]:
    return DATASETS.names(pattern)


def list_metrics(pattern: str | None = None) -> list[str]:
    return METRICS.names(pattern)


def build_loss(name: str, **kwargs):
    return LOSSES.build(name, **kwargs)


def build_dataset(name: str, **kwargs):
    return DATASETS.build(name, **kwargs)


def build_metric(name: str, **kwargs):
    return METRICS.build(name, **kwargs)
