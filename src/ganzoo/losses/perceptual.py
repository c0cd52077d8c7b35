"""VGG-16 perceptual (feature reconstruction) loss.

Johnson et al., Perceptual Losses for Real-Time Style Transfer and Super-Resolution, ECCV 2016
(arXiv:1603.08155); VGG-16 from Simonyan & Zisserman (arXiv:1409.1556) with torchvision's
ImageNet weights (``VGG16_Weights.IMAGENET1K_V1``).

The loss compares VGG-16 activations of two images at relu1_2, relu2_2 and relu3_3 (indices 3,
8 and 15 of torchvision's ``vgg16().features``) and sums the per-layer mean squared (or
absolute) differences, each optionally weighted. Inputs are images in [-1, 1]; they are mapped
to [0, 1] and normalised with the ImageNet mean and std before the network. Single-channel
images are repeated to three channels.

Weights, in order of precedence:

1. ``weights=<path>``: a local file (torchvision's ``vgg16-397923af.pth``, or any ``.pth`` /
   ``.safetensors`` state dict of ``vgg16`` or of its ``features``);
2. ``weights="imagenet"`` (the default) and the environment variable ``GANZOO_VGG16_WEIGHTS``
   naming such a file;
3. ``weights="imagenet"``: torchvision's own download into the torch hub cache
   (``$TORCH_HOME/hub/checkpoints``) on first use; later uses read the cache.

Offline with none of these, construction raises :class:`PerceptualWeightsError` saying how to
supply the file. ``weights="random"`` keeps the random initialisation: for tests and timing only,
never the default. Built on the ``meta`` device, no weights are read.

The VGG is frozen (``requires_grad=False``), always in eval mode, and kept out of the owner's
``state_dict``: it is a fixed measuring instrument, not part of a trained model, so saved
checkpoints neither carry nor expect its 1.7 M parameters.

Departures from Johnson et al.: several layers instead of relu2_2 alone (as the VAE track of
docs/workflows/generator_evolution.md and most VAE/GAN uses), and the per-layer loss is a mean,
not a sum normalised by C*H*W (the same thing up to the batch size).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._io import load_tensors
from ..hub import WeightsDownloadError, WeightsError, fetch_weights, torch_hub_checkpoints
from ..registry import register_loss

__all__ = ["VGGPerceptualLoss", "PerceptualWeightsError", "VGG16_LAYERS", "ENV_VAR",
           "perceptual", "vgg_perceptual"]

ENV_VAR = "GANZOO_VGG16_WEIGHTS"
# Name -> index of the ReLU in torchvision's ``vgg16().features`` (checked in the tests).
VGG16_LAYERS = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualWeightsError(WeightsError):
    """VGG-16 weights could not be found or downloaded."""


def _how_to_supply(cache_dir: Path) -> str:
    return (
        "Supply the file torchvision would download (vgg16-397923af.pth, from "
        "https://download.pytorch.org/models/vgg16-397923af.pth) in one of these ways:\n"
        f"  - set the environment variable {ENV_VAR}=/path/to/vgg16-397923af.pth;\n"
        "  - pass weights='/path/to/vgg16-397923af.pth' (for a model preset: "
        "perceptual_weights='/path/...');\n"
        f"  - copy it into torchvision's cache: {cache_dir}/vgg16-397923af.pth.\n"
        "For tests only, weights='random' skips pretrained weights (the loss is then not "
        "perceptual)."
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = load_tensors(path, "perceptual-loss weights")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise PerceptualWeightsError(f"{path} does not hold a state dict")
    return obj


def _features_state_dict(sd: dict[str, torch.Tensor], n: int, source: str):
    """Keep ``features.<i>.*`` for i < n (accepts full-vgg16 or features-only keys)."""
    out = {}
    for key, value in sd.items():
        k = key[len("features."):] if key.startswith("features.") else key
        idx = k.split(".", 1)[0]
        if idx.isdigit() and int(idx) < n:
            out[k] = value
    if not out:
        raise PerceptualWeightsError(f"{source} holds no VGG-16 'features.*' weights")
    return out


def _imagenet_state_dict() -> tuple[dict[str, torch.Tensor], str]:
    """``$GANZOO_VGG16_WEIGHTS``, else torchvision's file in torch's hub cache (where
    torchvision's own download puts it), else that download (:func:`ganzoo.hub.fetch_weights`)."""
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    cache_dir = torch_hub_checkpoints()
    try:
        path = fetch_weights(url, env=ENV_VAR)
    except FileNotFoundError:
        raise PerceptualWeightsError(f"{ENV_VAR}={os.environ.get(ENV_VAR)} is not a file.\n"
                                     + _how_to_supply(cache_dir)) from None
    except WeightsDownloadError as e:
        raise PerceptualWeightsError(
            "Could not get VGG-16 ImageNet weights for the perceptual loss: download failed "
            f"({e.reason}).\n" + _how_to_supply(cache_dir)) from e
    return _read_state_dict(path), (str(path) if os.environ.get(ENV_VAR) else "torchvision")


class VGGPerceptualLoss(nn.Module):
    """Perceptual loss between images in [-1, 1]: ``loss(x, y)`` -> scalar.

    Args:
        layers: VGG-16 ReLU names (keys of :data:`VGG16_LAYERS`), shallow to deep.
        weights: ``"imagenet"`` (default), a path to a weights file, or ``"random"`` (tests).
        layer_weights: one weight per layer (default all 1).
        criterion: ``"mse"`` (Johnson et al.) or ``"l1"``.
    """

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS, weights: str = "imagenet",
                 layer_weights: Sequence[float] | None = None,
                 criterion: Literal["mse", "l1"] = "mse"):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must name at least one VGG-16 layer")
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown:
            raise ValueError(f"layers: unknown VGG-16 layer {unknown[0]!r}; "
                             f"choose from {list(VGG16_LAYERS)}")
        idx = [VGG16_LAYERS[name] for name in layers]
        if idx != sorted(set(idx)):
            raise ValueError(f"layers must be distinct and ordered shallow to deep, got {layers}")
        if layer_weights is None:
            layer_weights = (1.0,) * len(layers)
        layer_weights = tuple(float(w) for w in layer_weights)
        if len(layer_weights) != len(layers):
            raise ValueError(f"layer_weights needs {len(layers)} values, got {len(layer_weights)}")
        if criterion not in ("mse", "l1"):
            raise ValueError(f"criterion must be 'mse' or 'l1', got {criterion!r}")
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(f"weights must be 'imagenet', 'random' or a path, got {weights!r}")
        self.layers = layers
        self.layer_indices = tuple(idx)
        self.layer_weights = layer_weights
        self.criterion = criterion
        self.weights = os.fspath(weights)

        n = idx[-1] + 1
        # torchvision's own VGG-16 ``features`` builder (config "D"), cut after the deepest
        # layer used; the classifier (120 M parameters) is never built.
        cfg, count = [], 0
        for v in cfgs["D"]:
            if count >= n:
                break
            cfg.append(v)
            count += 1 if v == "M" else 2  # conv + ReLU
        self.features = make_layers(cfg, batch_norm=False)[:n]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        if self.weights != "random" and torch.empty(0).device.type != "meta":
            self._load(n)
        self.requires_grad_(False)
        super().train(False)
        # A fixed instrument, not a trained part: out of the owner's checkpoint.
        self.register_state_dict_post_hook(_drop_own_keys)
        self.register_load_state_dict_pre_hook(_fill_own_keys)

    def _load(self, n: int) -> None:
        if self.weights == "imagenet":
            sd, source = _imagenet_state_dict()
        else:
            path = Path(self.weights).expanduser()
            if not path.is_file():
                raise PerceptualWeightsError(
                    f"weights={self.weights!r} is not a file, nor 'imagenet' or 'random'.\n"
                    + _how_to_supply(torch_hub_checkpoints()))
            sd, source = _read_state_dict(path), str(path)
        sd = _features_state_dict(sd, n, source)
        try:
            self.features.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise PerceptualWeightsError(f"{source} does not match VGG-16: {e}") from e

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: frozen instrument

    def extra_repr(self) -> str:
        return (f"layers={self.layers}, weights={self.weights!r}, criterion={self.criterion!r}, "
                f"layer_weights={self.layer_weights}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"perceptual loss needs 1 or 3 channels, got {x.shape[1]}")
        return ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def features_at_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """VGG activations of ``x`` (in [-1, 1]) at ``self.layers``, in order."""
        h = self.normalize(x)
        out = []
        taps = set(self.layer_indices)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in taps:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Perceptual distance of ``x`` from target ``y``; gradients flow into both.

        Detach the target yourself when it should not receive gradients (the usual case).
        """
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        n = x.shape[0]
        feats = self.features_at_layers(torch.cat([x, y]))
        dist = F.mse_loss if self.criterion == "mse" else F.l1_loss
        loss = x.new_zeros(())
        for w, f in zip(self.layer_weights, feats):
            loss = loss + w * dist(f[:n], f[n:])
        return loss


def _drop_own_keys(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _fill_own_keys(module, state_dict, prefix, local_metadata, strict, missing_keys,
                   unexpected_keys, error_msgs):
    # Loading an owner's checkpoint: keep the VGG as it is, whatever the file holds.
    for key, value in module.features.state_dict(keep_vars=True).items():
        state_dict[f"{prefix}features.{key}"] = value.detach()


@register_loss
def perceptual(**kwargs) -> VGGPerceptualLoss:
    """VGG-16 perceptual loss on relu1_2, relu2_2, relu3_3 (Johnson et al. 2016)."""
    return VGGPerceptualLoss(**kwargs)


@register_loss
def vgg_perceptual(**kwargs) -> VGGPerceptualLoss:
    """Alias of ``perceptual``."""
    return VGGPerceptualLoss(**kwargs)
