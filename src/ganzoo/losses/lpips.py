"""LPIPS (Zhang et al., CVPR 2018, arXiv 1801.03924): a learned perceptual distance.

The network follows the reference implementation (richzhang/PerceptualSimilarity, v0.1) with
torchvision backbones: the input in [-1, 1] is shifted and scaled per channel, five ReLU taps
of AlexNet (default; the paper's recommended forward metric) or VGG-16 are unit-normalised
over channels, their squared differences are weighted per channel by the learned non-negative
linear layers ``lin0..lin4`` (1x1 convs without bias), averaged over space and summed.

Weights come from, in order: ``weights=`` (a file holding the full state dict, backbone
``net.*`` plus ``lin*``, in safetensors or a plain PyTorch state dict; or a file with the
``lin*`` layers only, the reference's ``alex.pth``/``vgg.pth``, combined with torchvision's
ImageNet backbone), ``$GANZOO_LPIPS_WEIGHTS``, or torch's hub cache and a download (torchvision
backbone + the reference's linear layers), through :func:`ganzoo.hub.fetch_weights`. Offline
without a file gives one error saying how to supply it. ``pretrained=False`` builds random
weights (tests only).

It lives with the losses so that models (BlobGAN's inversion metrics) may use it; the LPIPS
diversity metric (:mod:`ganzoo.metrics.lpips`) wraps it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .._io import load_tensors
from ..hub import WeightsDownloadError, WeightsError, fetch_weights

__all__ = ["LPIPS", "LPIPS_WEIGHTS_ENV", "LPIPS_LIN_URLS"]

LPIPS_WEIGHTS_ENV = "GANZOO_LPIPS_WEIGHTS"
_LPIPS_REPO = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1"
LPIPS_LIN_URLS = {"alex": f"{_LPIPS_REPO}/alex.pth", "vgg": f"{_LPIPS_REPO}/vgg.pth"}
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# Slices of torchvision's ``features`` ending at each tapped ReLU.
_TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}


class LPIPS(nn.Module):
    """LPIPS distance between image batches in [-1, 1]; ``forward(x, y) -> (N,)``."""

    def __init__(self, net: Literal["alex", "vgg"] = "alex", weights: str | None = None,
                 pretrained: bool = True, seed: int = 0):
        super().__init__()
        if net not in _CHANNELS:
            raise ValueError(f"LPIPS.net must be 'alex' or 'vgg', got {net!r}")
        self.net_name = net
        backbone = _backbone(net)
        taps = (0,) + _TAPS[net]
        self.net = nn.ModuleList(backbone[a:b] for a, b in zip(taps[:-1], taps[1:]))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        if pretrained:
            self._load(weights)
        else:
            self._random_init(seed)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def _random_init(self, seed: int) -> None:
        """He-normal backbone and non-negative linear layers from ``seed`` (tests only)."""
        g = torch.Generator().manual_seed(seed)
        for m in self.net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g)
                               * (2.0 / m.weight[0].numel()) ** 0.5)
                m.bias.zero_()
        for lin in self.lins:
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=g) / lin.weight.shape[1])
        self.weights_source = f"random init, seed {seed}"

    # -- weights ----------------------------------------------------------------------------
    def _load(self, path: str | None) -> None:
        """``path`` (or ``$GANZOO_LPIPS_WEIGHTS``): a full state dict, or the linear layers
        alone (then torchvision's ImageNet backbone); without either, the reference's linear
        layers and torchvision's backbone from torch's hub cache or a download."""
        url = LPIPS_LIN_URLS[self.net_name]
        given = path is not None or bool(os.environ.get(LPIPS_WEIGHTS_ENV))
        try:
            file = fetch_weights(url, path, env=LPIPS_WEIGHTS_ENV)
        except WeightsDownloadError as e:
            raise _offline_error(self.net_name, e.reason) from None
        state = _read_state(file)
        lin = {k: v for k, v in state.items() if k.startswith("lin")}
        backbone = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        self._load_lins(lin, file if given else url)
        if backbone:
            self.net.load_state_dict(backbone)
            self.weights_source = str(file)
            return
        self._load_backbone()
        self.weights_source = (f"{file} + torchvision {self.net_name} ImageNet" if given
                               else f"{url} + torchvision ImageNet")

    def _load_backbone(self) -> None:
        import torchvision

        weights = (torchvision.models.AlexNet_Weights.IMAGENET1K_V1 if self.net_name == "alex"
                   else torchvision.models.VGG16_Weights.IMAGENET1K_V1)
        try:
            file = fetch_weights(weights.url)
        except WeightsDownloadError as e:
            raise _offline_error(self.net_name, e.reason) from None
        full = load_tensors(file, "torchvision backbone weights")
        self._load_backbone_state({k[len("features."):]: v for k, v in full.items()
                                   if k.startswith("features.")})

    def _load_backbone_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load torchvision ``features.N.*`` numbering into the sliced backbone.

        Slicing an ``nn.Sequential`` keeps the original layer numbers, so block ``i`` holds the
        keys ``a..b-1`` of its slice.
        """
        taps = (0,) + _TAPS[self.net_name]
        for i, (a, b) in enumerate(zip(taps[:-1], taps[1:])):
            part = {k: v for k, v in state.items() if a <= int(k.partition(".")[0]) < b}
            self.net[i].load_state_dict(part)

    def _load_lins(self, lin: dict, source) -> None:
        for k in range(len(self.lins)):
            w = lin.get(f"lin{k}.model.1.weight", lin.get(f"lin{k}.weight",
                                                          lin.get(f"lins.{k}.weight")))
            if w is None:
                raise ValueError(f"LPIPS weights {source} lack the linear layer lin{k} "
                                 f"(expected key 'lin{k}.model.1.weight')")
            self.lins[k].weight.data.copy_(w.reshape(self.lins[k].weight.shape))

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Backbone and linear layers in the file layout ``weights=`` reads."""
        out = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        out.update({f"lin{k}.model.1.weight": m.weight for k, m in enumerate(self.lins)})
        return {k: v.detach().contiguous() for k, v in out.items()}

    # -- forward ----------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised features of each tap, for images in [-1, 1]."""
        h = (x - self.shift) / self.scale
        out = []
        for block in self.net:
            h = block(h)
            out.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        return sum(lin((a - b).pow(2)).mean(dim=(1, 2, 3)) for lin, a, b in zip(self.lins, fx, fy))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(x), self.features(y))


def _backbone(net: str) -> nn.Sequential:
    """torchvision's ``features`` of AlexNet or VGG-16, without building the classifier."""
    if net == "vgg":
        from torchvision.models.vgg import cfgs, make_layers

        return make_layers(cfgs["D"], batch_norm=False)
    return nn.Sequential(  # torchvision.models.AlexNet.features, layer for layer
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = load_tensors(path, "LPIPS weights")
    if not isinstance(state, dict):
        raise ValueError(f"LPIPS weights {path} hold a {type(state).__name__}, not a state dict")
    return state


def _offline_error(net: str, reason: str) -> WeightsError:
    return WeightsError(
        f"cannot get the LPIPS-{net} weights: downloading failed ({reason}). "
        f"On a machine with internet access run "
        f"`python -c \"import ganzoo.losses.lpips as l, safetensors.torch as s; "
        f"s.save_file(l.LPIPS('{net}').full_state_dict(), 'lpips_{net}.safetensors')\"`, copy "
        f"the file here and pass it as LPIPS weights (metric_kwargs={{'lpips_diversity': "
        f"{{'weights': PATH}}}}) or set {LPIPS_WEIGHTS_ENV}=PATH.")
