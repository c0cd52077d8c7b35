"""Weights on disk and on the Hugging Face Hub: safetensors + config.json + a model card.

A saved model is a folder holding

- ``model.safetensors``: every network, EMA copies included (under the ``ema.`` prefix);
- ``config.json``: the preset name, the full config and the ganzoo version;
- ``README.md``: a model card.

Loading never unpickles, rebuilds the preset from ``config.json`` and loads strictly. Hub
transfers go through ``huggingface_hub`` (``snapshot_download``, ``HfApi.upload_folder``), so
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME`` and tokens behave as everywhere else.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_path, atomic_write_text, load_state_dict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

__all__ = ["save_pretrained", "from_pretrained", "load_weights", "push_to_hub",
           "resolve_folder", "HubError", "WEIGHTS_NAME", "CONFIG_NAME"]


class HubError(RuntimeError):
    """A Hub transfer failed; the message says why (offline, not found, not logged in) and what
    to do, and the huggingface_hub exception is chained as ``__cause__``."""


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
    return HubError(why)


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


def save_pretrained(model, save_directory, **card: Any) -> Path:
    """Write weights, config and model card into ``save_directory`` (created if needed).

    ``card`` adds known facts to the model card: ``dataset``, ``metrics`` (a dict),
    ``eval_protocol``, ``steps``. Each file is written under a temporary name and renamed,
    so an interrupted save never leaves a half-written file under the final name.
    """
    from safetensors.torch import save_model

    from . import __version__, config as cfg

    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ValueError(f"refusing to save non-finite weights: '{name}' has NaN or inf")
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
    atomic_write_text(folder / CARD_NAME, _model_card(model, config, card))
    return folder


def _model_card(model, config: dict, card: dict) -> str:
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("ema."))
    lines = [
        "---",
        "library_name: ganzoo",
        "tags: [ganzoo, image-generation, " + (model.family or "generative") + "]",
        "---",
        "",
        f"# {model.preset or type(model).__name__}",
        "",
        f"A `{type(model).__name__}` ({model.family}) saved by ganzoo {config['ganzoo_version']}.",
        "",
        f"- **Paper**: {model.paper or 'n/a'}",
        f"- **Task**: `{model.task}`",
        f"- **Parameters**: {n_params / 1e6:.2f} M (EMA copies not counted)",
        f"- **Training data**: {card.get('dataset', 'unknown')}",
    ]
    if "steps" in card:
        lines.append(f"- **Training steps**: {card['steps']}")
    if card.get("metrics"):
        lines += ["", "## Evaluation", ""]
        if card.get("eval_protocol"):
            lines += [f"Protocol: `{json.dumps(card['eval_protocol'])}`", ""]
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in card["metrics"].items()]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import ganzoo",
        "model = ganzoo.from_pretrained(\"PATH_OR_REPO_ID\")",
        "```",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config["config"], indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def resolve_folder(source: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder for ``source``: a folder path, ``local-dir:PATH``, or a Hub repo id
    (``org/name`` or ``hf-hub:org/name``) downloaded through the Hugging Face cache."""
    source = os.fspath(source)
    if source.startswith("local-dir:"):
        source = source[len("local-dir:"):]
        if not os.path.isdir(source):
            raise FileNotFoundError(f"no such folder: {source}")
        return Path(source)
    if source.startswith("hf-hub:"):
        source = source[len("hf-hub:"):]
    elif os.path.isdir(source):
        return Path(source)
    elif os.path.exists(source) or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise FileNotFoundError(
            f"'{source}' is neither a folder with {WEIGHTS_NAME} and {CONFIG_NAME} "
            f"nor a Hub repo id of the form 'org/name'")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id=source, revision=revision,
                                 allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME])
    except Exception as e:  # noqa: BLE001 - filtered: only transfer errors are translated
        if not _is_transfer_error(e):
            raise
        raise _hub_error(e, "download", source, revision) from e
    return Path(path)


def _read_config(folder: Path) -> dict:
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


def from_pretrained(source: str | os.PathLike, revision: str | None = None, **overrides):
    """Rebuild a saved model from a folder or Hub repo id and load its weights strictly."""
    from .registry import MODELS

    folder = resolve_folder(source, revision)
    data = _read_config(folder)
    preset = data["preset"]
    if preset not in MODELS:
        from .config import close_matches

        near = close_matches(str(preset), MODELS.names())
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise KeyError(f"{folder / CONFIG_NAME} names preset '{preset}', which is not a "
                       f"registered ganzoo model{hint}; is the plugin that provides it installed?")
    model = MODELS.build(preset, **{**data["config"], **overrides})
    load_weights(model, folder / WEIGHTS_NAME)
    return model


def resolve_model(spec, revision: str | None = None):
    """The one resolver of "which model": returns ``(model, kind)``.

    ``spec`` is a model object (``kind="object"``), ``model:NAME`` or a registered preset
    name, with an optional ``.tag`` (``"preset"``: built fresh, so untrained unless the tag
    names pretrained weights), a saved folder or ``local-dir:PATH`` (``"folder"``), or a Hub
    repo id, ``org/name`` or ``hf-hub:org/name[@revision]`` (``"hub"``). The CLI, evaluate,
    ``generate_folder`` and ``ganzoo sample`` all go through here.
    """
    from . import build
    from .models.base import GenerativeModel
    from .registry import MODELS

    if isinstance(spec, GenerativeModel):
        return spec, "object"
    s = os.fspath(spec)
    if s.startswith("model:"):
        return build(s[len("model:"):]), "preset"
    if s.startswith("hf-hub:"):
        repo, _, rev = s.partition("@")
        return from_pretrained(repo, revision=rev or revision), "hub"
    if s.startswith("local-dir:") or os.path.isdir(s):
        return from_pretrained(s), "folder"
    if s.partition(".")[0] in MODELS:
        return build(s), "preset"
    if s.count("/") == 1 and not s.startswith((".", "/", "~")):
        return from_pretrained(s, revision=revision), "hub"
    from .config import close_matches

    near = close_matches(s, MODELS.names())
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    raise FileNotFoundError(f"'{s}' is not a model preset, a saved-model folder or a Hub repo "
                            f"id (org/name).{hint}")


def push_to_hub(model, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload ganzoo model",
                **card: Any) -> str:
    """Create ``repo_id`` if needed and upload the saved folder; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, **card)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                     commit_message=commit_message, repo_type="model")
        except Exception as e:  # noqa: BLE001 - filtered: only transfer errors are translated
            if not _is_transfer_error(e):
                raise
            raise _hub_error(e, "upload", repo_id, revision) from e
    return str(getattr(info, "commit_url", info))
