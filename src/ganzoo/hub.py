"""Weights on disk and on the Hugging Face Hub: safetensors + config.json + a model card.

A saved model is a folder holding

- ``model.safetensors``: every network, EMA copies included (under the ``ema.`` prefix);
- ``config.json``: the preset name, the full config and the ganzoo version;
- ``README.md``: a model card.

Loading never unpickles, rebuilds the preset from ``config.json`` and loads strictly. Hub
transfers go through ``huggingface_hub`` (``snapshot_download``, ``HfApi.upload_folder``), so
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME`` and tokens behave as everywhere else.

The weights of the pretrained networks that metrics and losses use (Inception, LPIPS, VGG) are
found here too (:func:`fetch_weights`: an argument, an environment variable, torch's hub cache,
a download). This module imports no model: a model is duck-typed (``preset``, ``family``,
``config``, ``state_dict``), and a saved one is rebuilt through the registry. Turning "which
model" into a model is :mod:`ganzoo._factory`'s.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from . import config as cfg, rundir
from ._io import atomic_path, atomic_write_text, load_state_dict
from ._version import __version__
from .config import did_you_mean
from .modelcard import model_card
from .registry import MODELS

# A saved model is a run's final/ folder: the same two files (ganzoo.rundir names them).
WEIGHTS_NAME = rundir.WEIGHTS
CONFIG_NAME = rundir.CONFIG
CARD_NAME = "README.md"

__all__ = ["save_pretrained", "from_pretrained", "load_weights", "push_to_hub", "push_folder",
           "resolve_folder", "read_config", "is_model_folder", "check_path_like", "split_revision",
           "fetch_weights", "weights_cache_path", "torch_hub_checkpoints", "WeightsError", "WeightsDownloadError",
           "HubError", "WEIGHTS_NAME", "CONFIG_NAME"]


class WeightsError(RuntimeError):
    """A pretrained network's weights (a feature extractor, LPIPS, VGG) are neither on disk nor
    downloadable; the message says how to supply the file."""


class WeightsDownloadError(WeightsError):
    """:func:`fetch_weights` found no file and could not download one; ``url``, ``cache_path``
    and ``reason`` (the download error, one line) say what to tell the user."""

    def __init__(self, url: str, cache_path: Path, reason: str):
        super().__init__(f"{cache_path} is absent and downloading {url} failed ({reason})")
        self.url, self.cache_path, self.reason = url, cache_path, reason


class HubError(RuntimeError):
    """A Hub transfer failed; the message alone says why (offline, not found, not logged in)
    and what to do. It is raised ``from None``, so a traceback is this one exception, not
    huggingface_hub's chain of three; the original exception is kept as ``hub_exception``."""

    hub_exception: BaseException | None = None


def _hub_error(e: Exception, action: str, repo_id: str, revision: str | None) -> HubError:
    """One line for a huggingface_hub / HTTP failure of ``action`` ("download", "upload")."""
    from huggingface_hub import errors

    at = f" at revision '{revision}'" if revision else ""
    login = "log in with `hf auth login`, set HF_TOKEN, or pass token=..."
    if isinstance(e, errors.OfflineModeIsEnabled) and action == "upload":
        why = (f"cannot upload '{repo_id}': offline mode is on (HF_HUB_OFFLINE=1); unset it "
               f"on a machine with network access, or save_pretrained() to a folder and push "
               f"it later with `hf upload`")
    elif isinstance(e, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)):
        why = (f"'{repo_id}'{at} is not in the Hugging Face cache and the Hub cannot be "
               f"reached (offline: HF_HUB_OFFLINE=1 or no network). Download it once on a "
               f"machine with network access (the cache is HF_HOME), or pass a local folder")
    elif isinstance(e, errors.RevisionNotFoundError):
        why = f"'{repo_id}' has no revision '{revision}'; check the branch, tag or commit"
    elif isinstance(e, errors.GatedRepoError):
        why = f"'{repo_id}' is gated: accept its terms on the Hub, then {login}"
    elif isinstance(e, errors.RepositoryNotFoundError):
        why = (f"'{repo_id}' does not exist on the Hub, or it is private and you are not "
               f"logged in ({login})")
    elif isinstance(e, errors.LocalTokenNotFoundError) or (
            isinstance(e, errors.HfHubHTTPError) and getattr(e.response, "status_code", None)
            in (401, 403)):
        why = (f"the Hub refused the {action} of '{repo_id}': not logged in or no write "
               f"access; {login}")
    else:
        why = (f"could not {action} '{repo_id}'{at}: the Hub could not be reached or answered "
               f"an error ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
               f"check the network and HF_ENDPOINT")
    err = HubError(why)
    err.hub_exception = e
    return err


def _is_transfer_error(e: Exception) -> bool:
    """huggingface_hub's own errors and the HTTP client's (httpx or requests) connection
    errors; not programming errors such as TypeError."""
    from huggingface_hub import errors

    if isinstance(e, (errors.HfHubHTTPError, errors.OfflineModeIsEnabled,
                      errors.LocalEntryNotFoundError, errors.LocalTokenNotFoundError,
                      ConnectionError, TimeoutError)):
        return True
    return type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests",
                                                 "urllib3")


# Keyword arguments of ``push_to_hub`` that ``save_pretrained(..., push_to_hub=True)`` passes
# on, as huggingface_hub's ModelHubMixin does; every other keyword is a card fact.
PUSH_KWARGS = ("private", "token", "branch", "revision", "create_pr", "commit_message",
               "allow_patterns", "ignore_patterns", "delete_patterns")
SAMPLES_NAME = "samples.png"


def save_pretrained(model, save_directory, *, push_to_hub: bool = False,
                    repo_id: str | None = None, model_card_kwargs: dict | None = None,
                    **kwargs: Any) -> Path | str:
    """Write weights, config and model card into ``save_directory`` (created if needed).

    Keywords other than push options are card facts (``ganzoo.modelcard``): ``dataset``,
    ``datasets``, ``steps``, ``evaluations``, ``license``, ``tags``, ``sample_grid`` (a PNG,
    copied in as ``samples.png``); ``model_card_kwargs`` is the same as a dict, the name
    ModelHubMixin uses. ``push_to_hub=True`` then uploads the folder to ``repo_id`` (default:
    the folder's name) with the push options of :func:`push_to_hub`, and returns the commit
    URL; otherwise the folder is returned. Each file is written under a temporary name and
    renamed, so an interrupted save never leaves a half-written file under the final name.
    """
    import torch
    from safetensors.torch import save_model

    push = {k: kwargs.pop(k) for k in PUSH_KWARGS if k in kwargs}
    if push and not push_to_hub:
        raise TypeError(f"{', '.join(push)}: push options need push_to_hub=True")
    card = {**(model_card_kwargs or {}), **kwargs}
    folder = Path(save_directory)
    if push_to_hub and repo_id is None:
        repo_id = folder.resolve().name
    folder.mkdir(parents=True, exist_ok=True)
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ValueError(f"refusing to save non-finite weights: '{name}' has NaN or inf")
    if card.get("sample_grid"):
        grid = Path(card["sample_grid"])
        if not grid.is_file() and (folder / grid.name).is_file():
            grid = folder / grid.name  # the facts of a saved folder name its own copy
        if not grid.is_file():
            raise FileNotFoundError(f"sample_grid {grid} does not exist")
        if grid.resolve() != (folder / SAMPLES_NAME).resolve():
            with atomic_path(folder / SAMPLES_NAME) as tmp:
                shutil.copyfile(grid, tmp)
        card["sample_grid"] = SAMPLES_NAME
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt", "ganzoo_version": __version__,
                                              "preset": str(model.preset)})
    config = {
        "ganzoo_version": __version__,
        "preset": model.preset,
        "family": model.family,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": cfg.to_dict(model.config),
    }
    if card:
        config["card"] = json.loads(json.dumps(card, default=str))
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    atomic_write_text(folder / CARD_NAME, model_card(model, config, config.get("card", {}),
                                                     repo_id))
    if push_to_hub:
        return _upload(folder, repo_id, **push)
    return folder


def is_model_folder(path: str | os.PathLike) -> bool:
    """``path`` holds a saved model itself (``config.json`` and ``model.safetensors``)."""
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def _model_folder(folder: Path) -> Path:
    """A saved-model folder, or a trainer run folder (``OUT``, whose own config.json is the run
    config and whose weights are in ``final/``), which means its ``final/``."""
    final = rundir.RunDir(folder).final
    if not (folder / WEIGHTS_NAME).is_file() and (final / WEIGHTS_NAME).is_file():
        return final
    return folder


def split_revision(repo: str, revision: str | None = None) -> tuple[str, str | None]:
    """``org/name@rev`` -> ``("org/name", "rev")`` (timm's ``hf-hub:`` syntax); an explicit
    ``revision`` loses to one in the string. Repo ids cannot hold ``@``."""
    repo, at, rev = repo.partition("@")
    return repo, (rev if at and rev else revision)


def resolve_folder(source: str | os.PathLike, revision: str | None = None, *,
                   token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                   force_download: bool = False, local_files_only: bool = False) -> Path:
    """A local folder for ``source``: a saved-model folder, a trainer run folder (its
    ``final/``), ``local-dir:PATH``, or a Hub repo id (``org/name``, ``hf-hub:org/name``, with
    an optional ``@revision``) downloaded through the Hugging Face cache; the keywords are
    ``snapshot_download``'s."""
    source = os.fspath(source)
    if source.startswith("local-dir:"):
        source = source[len("local-dir:"):]
        if not os.path.isdir(source):
            raise FileNotFoundError(f"no such folder: {source}")
        return _model_folder(Path(source))
    if source.startswith("hf-hub:"):
        source = source[len("hf-hub:"):]
    elif os.path.isdir(source):
        return _model_folder(Path(source))
    source, revision = split_revision(source, revision)
    check_path_like(source)
    if os.path.exists(source) or source.count("/") != 1:
        raise FileNotFoundError(
            f"'{source}' is neither a folder with {WEIGHTS_NAME} and {CONFIG_NAME} "
            f"nor a Hub repo id of the form 'org/name'")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id=source, revision=revision, token=token,
                                 cache_dir=cache_dir, force_download=force_download,
                                 local_files_only=local_files_only,
                                 allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
                                 library_name="ganzoo", library_version=__version__)
    except Exception as e:  # noqa: BLE001 - filtered: only transfer errors are translated
        if not _is_transfer_error(e):
            raise
        raise _hub_error(e, "download", source, revision) from None
    return Path(path)


def looks_like_path(source: str) -> bool:
    """A source meant as a local path: it starts with ``.``, ``~`` or ``/``, or it holds a ``/``
    and its first part exists here (``runs/typo`` where ``runs/`` does). Such a source is never
    sent to the Hub as a repo id (``hf-hub:`` forces the Hub)."""
    if source.startswith((".", "~", "/")):
        return True
    first = source.split("/", 1)[0]
    return "/" in source and bool(first) and os.path.exists(first)


def check_path_like(source: str) -> None:
    """FileNotFoundError "no such folder", with the close matches among its siblings, for a
    path-like ``source`` that is not a folder."""
    path = Path(os.path.expanduser(source))
    if not looks_like_path(source) or path.is_dir():
        return
    if path.exists():
        raise FileNotFoundError(f"{source} is a file: pass the folder that holds "
                                f"{WEIGHTS_NAME} and {CONFIG_NAME}")
    parent = path.parent
    siblings = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    near = did_you_mean(path.name, siblings, sentence=True,
                        show=lambda name: os.path.join(os.path.dirname(source.rstrip("/")), name))
    if not parent.is_dir():
        hint = f" ({parent} does not exist either)"
    elif near:
        hint = "." + near
    else:
        hint = f" (nor anything like it in {parent})"
    raise FileNotFoundError(f"{source}: no such folder{hint}")


def read_config(folder: Path) -> dict:
    """The ``config.json`` of a saved-model folder, checked to name a preset and a config."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a ganzoo model folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    for key in ("preset", "config"):
        if key not in data:
            raise ValueError(f"{path} has no '{key}' entry: not a ganzoo model config")
    return data


def load_weights(model, path: str | os.PathLike, strict: bool = True) -> None:
    """Load a ``model.safetensors`` (or a folder holding one) into ``model``, strictly."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    state = load_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if strict and (missing or unexpected or wrong):
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        if wrong:
            parts.append("shape mismatches: " + _short(
                [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]))
        raise ValueError(f"weights in {path} do not match {type(model).__name__} "
                         f"(preset {model.preset!r}): " + "; ".join(parts))
    model.load_state_dict(state, strict=strict)


def _short(items: list[str], n: int = 10) -> str:
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def from_pretrained(source: str | os.PathLike, revision: str | None = None, *,
                    token: str | bool | None = None,
                    cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                    local_files_only: bool = False, **overrides):
    """Rebuild a saved model from a folder, a run folder or a Hub repo id and load its weights
    strictly. The download keywords are ModelHubMixin's (``snapshot_download``'s); the rest
    override config fields. The model is rebuilt through the registry, so this module imports
    no model."""
    folder = resolve_folder(source, revision, token=token, cache_dir=cache_dir,
                            force_download=force_download, local_files_only=local_files_only)
    data = read_config(folder)
    preset = data["preset"]
    if preset not in MODELS:
        near = did_you_mean(str(preset), MODELS.names())
        hint = f" ({near[2:]})" if near else ""
        raise KeyError(f"{folder / CONFIG_NAME} names preset '{preset}', which is not a "
                       f"registered ganzoo model{hint}; is the plugin that provides it installed?")
    model = MODELS.build(preset, **{**data["config"], **overrides})
    load_weights(model, folder / WEIGHTS_NAME)
    return model


def push_to_hub(model, repo_id: str, *, commit_message: str = "Upload ganzoo model",
                private: bool | None = None, token: str | None = None,
                branch: str | None = None, create_pr: bool | None = None,
                allow_patterns: list[str] | str | None = None,
                ignore_patterns: list[str] | str | None = None,
                delete_patterns: list[str] | str | None = None,
                model_card_kwargs: dict | None = None, revision: str | None = None,
                **card: Any) -> str:
    """Save ``model`` (card facts: ``card``, ``model_card_kwargs``) with ``repo_id`` in its
    card, create the repo if needed and upload it in one commit; returns the commit URL, or
    the pull request's with ``create_pr``. The keywords are ModelHubMixin's; ``revision`` is
    ganzoo 0.1's name for ``branch``."""
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, repo_id=repo_id,
                        model_card_kwargs={**(model_card_kwargs or {}), **card})
        return _upload(Path(tmp), repo_id, commit_message=commit_message, private=private,
                       token=token, branch=branch or revision, create_pr=create_pr,
                       allow_patterns=allow_patterns, ignore_patterns=ignore_patterns,
                       delete_patterns=delete_patterns)


def push_folder(folder: str | os.PathLike, repo_id: str, *,
                evaluations: list[dict] | None = None, **kwargs: Any) -> str:
    """Upload a saved-model folder, or a run folder's ``final/``, as it is: same weights and
    files, with the card rewritten for ``repo_id`` (and ``evaluations``, results of
    ``ganzoo.evaluate``, added to it). ``kwargs``: push options of :func:`push_to_hub` and
    card facts (``license``, ``tags``, ...). The folder is loaded first, so a folder that does
    not load is never published."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{os.fspath(folder)} is not a folder: pass a saved-model folder "
                                f"or a trainer run folder (OUT, holding final/)")
    folder = _model_folder(Path(folder))
    push = {k: kwargs.pop(k) for k in PUSH_KWARGS if k in kwargs}
    model = from_pretrained(folder)
    config = read_config(folder)
    facts = {**config.get("card", {}), **json.loads(json.dumps(kwargs, default=str))}
    for e in evaluations or []:
        if not isinstance(e, dict) or not isinstance(e.get("metrics"), dict):
            raise ValueError("an evaluation must be a result of ganzoo.evaluate / `ganzoo eval "
                             "--out` ({\"metrics\": ..., \"protocol\": ...})")
    if evaluations:
        facts["evaluations"] = list(facts.get("evaluations") or []) + list(evaluations)
    config["card"] = facts
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith(".") and \
                    path.name not in (CONFIG_NAME, CARD_NAME):
                _link_or_copy(path, stage / path.name)
        atomic_write_text(stage / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        atomic_write_text(stage / CARD_NAME, model_card(model, config, facts, repo_id))
        return _upload(stage, repo_id, **push)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows (no copy of a large weights file), else a
    copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _upload(folder: Path, repo_id: str, *, commit_message: str = "Upload ganzoo model",
            private: bool | None = None, token: str | None = None, branch: str | None = None,
            revision: str | None = None, create_pr: bool | None = None,
            allow_patterns=None, ignore_patterns=None, delete_patterns=None) -> str:
    """Create ``repo_id`` (and ``branch``) if needed, then upload ``folder`` in one commit."""
    from huggingface_hub import HfApi

    branch = branch or revision
    if create_pr and branch not in (None, "main"):
        raise ValueError(f"create_pr opens a pull request against main; it cannot be combined "
                         f"with branch '{branch}' (drop one of them)")
    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True,
                                  repo_type="model").repo_id
        if branch and branch != "main" and not create_pr:
            # ModelHubMixin expects the branch to exist; a new branch named on the command
            # line is what a user means, so it is made from main.
            api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=branch,
                                 create_pr=create_pr, commit_message=commit_message,
                                 allow_patterns=allow_patterns, ignore_patterns=ignore_patterns,
                                 delete_patterns=delete_patterns, repo_type="model")
    except Exception as e:  # noqa: BLE001 - filtered: only transfer errors are translated
        if not _is_transfer_error(e):
            raise
        raise _hub_error(e, "upload", repo_id, branch) from None
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))


def torch_hub_checkpoints() -> Path:
    """torch's hub cache of weight files, ``$TORCH_HOME/hub/checkpoints``: where torchvision's
    and torch-fidelity's own downloads put them."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_cache_path(url: str) -> Path:
    """Where torch's hub cache keeps the file at ``url`` (:func:`torch_hub_checkpoints`)."""
    return torch_hub_checkpoints() / os.path.basename(url.split("?")[0])


def fetch_weights(url: str, path: str | os.PathLike | None = None, *,
                  env: str | None = None) -> Path:
    """The local file of a pretrained network's weights (a feature extractor, LPIPS, VGG).

    In order: ``path`` when given; else the file the environment variable ``env`` names; else
    torch's hub cache (:func:`weights_cache_path`); else a download of ``url`` into that cache.
    A ``path`` or ``env`` naming no file raises FileNotFoundError saying which; a failed
    download raises :class:`WeightsDownloadError` (callers turn it into their own "how to supply
    the file" message).
    """
    import torch

    source = path if path is not None else ((os.environ.get(env) or None) if env else None)
    if source is not None:
        file = Path(os.path.expanduser(os.fspath(source)))
        if not file.is_file():
            origin = "the weights argument" if path is not None else f"${env}"
            raise FileNotFoundError(f"weights file {file} (from {origin}) does not exist")
        return file
    cached = weights_cache_path(url)
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, socket errors, ssl, ...
        raise WeightsDownloadError(url, cached, f"{type(e).__name__}: {e}") from e
    return cached


def __getattr__(name: str):
    # ganzoo 0.1 had the parser of "which model" here; it builds models, so it now lives in
    # ganzoo._factory, above the models. The old name warns for a release.
    if name == "resolve_model":
        warnings.warn("ganzoo.hub.resolve_model is now ganzoo._factory.resolve_model; the old "
                      "name will be removed", DeprecationWarning, stacklevel=2)
        return importlib.import_module("ganzoo._factory").resolve_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
