"""BlobGAN's layout network, blob parameterisation, splatting and layout edits.

A *layout* is a plain ``dict`` of tensors (the keys of OCTET's layouts, ``valeoai/OCTET``),
for a batch of N scenes with K blobs:

========================  ==================  ============================================
key                       shape               meaning
========================  ==================  ============================================
``xs``, ``ys``            (N, K)              blob centres in [0, 1] (x across the width,
                                              y down the height)
``covs``                  (N, K, 4)           raw covariance: two aspect logits (a, b) and
                                              a rotation direction (u, v)
``sizes``                 (N, K + 1)          opacity logit at the centre; entry 0 is the
                                              background's (unused by splatting)
``features``              (N, K + 1, C_feat)  feature vectors, background first
``spatial_style``         (N, K + 1, C_style) style vectors, background first
========================  ==================  ============================================

Splatting (reference ``BlobGAN.splat_features``): the covariance is
``R diag(a', b') R^T`` with ``a, b = sigmoid(raw[:2])``, ``a' = 0.02 a / sqrt(ab)``,
``b' = 0.02 b / sqrt(ab)`` (fixed determinant ``0.02**2``; the blob's extent comes from its
size) and ``R = [u, v; -v, u]`` normalised from ``raw[2:]``. A blob's opacity at a point ``p``
is ``sigmoid(size - d^2)``, ``d^2 = (p - c)^T Sigma^{-1} (p - c)``: it is ``sigmoid(size)`` at
the centre and decays with the Mahalanobis distance. Blobs are alpha-composited in order over
an opaque background, later blobs on top: blob k's weight is ``alpha_k prod_{j>k}(1 - alpha_j)``
and the background's ``prod_j (1 - alpha_j)``.

Splatting jitter (OCTET's ``feature_jitter_xy/shift/angle``, on in its ``blobgan40.yaml``):
during training the splatted centres move by ``U(-xy, xy)`` per axis, the size logits by
``U(-shift, shift)`` and each blob's rotation by ``U(-angle, angle)`` radians, per blob and
scene; features and styles are untouched. :func:`draw_jitter` draws the offsets (from a
``torch.Generator`` when given), ``render_scores(..., jitter=...)`` applies them. The rotation
is straight-through, as the reference: the rendered covariance uses the rotated direction, the
gradient reaches the unrotated one.

Departures from the reference, all deliberate:

- Coordinates are normalised per axis and measured at pixel centres (``(j + 0.5) / W``); the
  reference uses ``j / S`` on a square grid, i.e. pixel corners: its blobs sit half a pixel of
  the score grid up and left of ours (``pixel_coordinates="corner"`` renders the reference's
  grid; ``tools/compare_blobgan.py`` measures both). For a rectangular grid (OCTET) this is the
  same as OCTET's rendering of a square grid stretched to the aspect ratio, without the
  resampling.
- Scores are rendered once at the output resolution and the pyramid halves them with 2x2
  average pooling, which equals the reference's bilinear halving (``align_corners=False``).
- The angle jitter rotates the blob's direction ``(u, v)`` by the drawn angle. The reference
  recovers the angle as ``arccos(u)``, which loses the sign of ``v``, and rebuilds the
  direction as ``(cos, -sin)``: a blob whose direction has ``v > 0`` is rendered mirrored
  (orientation ``-phi`` instead of ``phi``) whenever the jitter is on. Rotating keeps the
  orientation the layout network produced.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2 import EqualLinear

__all__ = [
    "LAYOUT_KEYS", "BLOB_KEYS", "LayoutMLP", "pixel_norm", "blob_covariance", "blob_opacity",
    "composite", "render_scores", "score_pyramid", "draw_jitter", "clone_layout", "select",
    "concat",
    "move_blob", "resize_blob", "remove_blob", "add_blob", "set_blob_feature", "set_blob_style",
    "num_blobs",
]

LAYOUT_KEYS = ("xs", "ys", "covs", "sizes", "features", "spatial_style")
BLOB_KEYS = ("xs", "ys", "covs")  # K entries; the rest have K + 1 (background first)

Layout = dict[str, torch.Tensor]


def pixel_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)


class LayoutMLP(nn.Module):
    """Noise -> K blobs: an equalised-lr MLP (pixel norm first) whose output is split into the
    blob parameters.

    ``mlp`` is a ``Sequential`` of ``[PixelNorm, Linear x n_layers]``, as in the reference, so
    ``mlp_idx`` indexes it the same way: ``latent(z, mlp_idx)`` runs ``mlp[:mlp_idx]`` and
    ``forward(h, mlp_idx)`` runs ``mlp[mlp_idx:]``; ``mlp_idx = -1`` is the input of the last
    layer (OCTET's encoder target) and ``mlp_idx = len(mlp)`` the MLP's output, the raw layout
    vector (the reference inverter's target, ``invertblobgan.py``).
    """

    def __init__(self, n_blobs: int, noise_dim: int, feature_dim: int, style_dim: int,
                 hidden_dim: int, n_layers: int, lr_mul: float = 0.01, norm_features: bool = True):
        super().__init__()
        self.n_blobs, self.feature_dim, self.style_dim = n_blobs, feature_dim, style_dim
        self.norm_features = norm_features
        per_blob = 2 + 4 + feature_dim + style_dim  # xy, cov, feature, style
        out_dim = (n_blobs + 1) + feature_dim + style_dim + n_blobs * per_blob
        layers: list[nn.Module] = [_PixelNorm()]
        for i in range(n_layers):
            last = i == n_layers - 1
            layers.append(EqualLinear(noise_dim if i == 0 else hidden_dim,
                                      out_dim if last else hidden_dim, lr_mul=lr_mul,
                                      activation=not last))
        self.mlp = nn.Sequential(*layers)

    def latent_dim(self, mlp_idx: int = -1) -> int:
        """Width of the latent at ``mlp_idx`` (the input of ``mlp[mlp_idx]``; the output width
        for ``mlp_idx = len(mlp)``)."""
        if mlp_idx == len(self.mlp):
            return self.mlp[-1].weight.shape[0]
        layer = self.mlp[mlp_idx]
        if isinstance(layer, _PixelNorm):
            layer = self.mlp[1]
        return layer.weight.shape[1]

    def latent(self, z: torch.Tensor, mlp_idx: int = -1) -> torch.Tensor:
        return self.mlp[:mlp_idx](z)

    def forward(self, z: torch.Tensor, mlp_idx: int | None = None) -> Layout:
        out = self.mlp(z) if mlp_idx is None else self.mlp[mlp_idx:](z)
        k, f, s = self.n_blobs, self.feature_dim, self.style_dim
        sizes, bg_feat, bg_style, blobs = out.split([k + 1, f, s, out.shape[1] - k - 1 - f - s], 1)
        blobs = blobs.reshape(len(z), k, -1)
        xy = blobs[..., :2].sigmoid()
        features = torch.cat([bg_feat[:, None], blobs[..., 6:6 + f]], 1)
        style = torch.cat([bg_style[:, None], blobs[..., 6 + f:]], 1)
        if self.norm_features:
            features, style = pixel_norm(features), pixel_norm(style)
        return {"xs": xy[..., 0], "ys": xy[..., 1], "covs": blobs[..., 2:6], "sizes": sizes,
                "features": features, "spatial_style": style}


class _PixelNorm(nn.Module):
    def forward(self, x):
        return pixel_norm(x)


# -- splatting ---------------------------------------------------------------------------------
def blob_covariance(covs: torch.Tensor, ab_norm: float = 0.02,
                    angle: torch.Tensor | None = None) -> torch.Tensor:
    """Raw (..., 4) covariance parameters -> (..., 2, 2) covariance matrices.

    ``angle`` (same leading shape): rotate each blob by that many radians, straight-through
    (the value is rotated, the gradient is the unrotated direction's), as the reference's
    ``feature_jitter_angle``."""
    a, b = covs[..., :2].sigmoid().unbind(-1)
    norm = ab_norm * torch.rsqrt(a * b)
    u = F.normalize(covs[..., 2:], dim=-1)
    if angle is not None:
        cos, sin = angle.cos(), angle.sin()
        turned = torch.stack([u[..., 0] * cos - u[..., 1] * sin,
                              u[..., 0] * sin + u[..., 1] * cos], -1)
        u = u + (turned - u).detach()
    v = torch.stack([-u[..., 1], u[..., 0]], -1)
    rot = torch.stack([u, v], -1)  # columns u, v
    diag = torch.diag_embed(torch.stack([a * norm, b * norm], -1))
    eye = torch.eye(2, device=covs.device, dtype=covs.dtype)
    return rot @ diag @ rot.transpose(-1, -2) + 1e-5 * eye


def draw_jitter(layout: Layout, xy: float = 0.0, shift: float = 0.0, angle: float = 0.0,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor] | None:
    """Splatting jitter offsets, ``U(-a, a)`` per blob and scene for each non-zero amplitude:
    ``dx``, ``dy`` (centres, in [0, 1] units of each axis), ``dsize`` (size logits), ``dangle``
    (radians). Drawn in that order on ``generator``'s device (the layout's when None) and
    moved, so a seeded generator gives the same offsets on every device. None when all
    amplitudes are 0."""
    if not (xy or shift or angle):
        return None
    ref = layout["xs"]
    dev = generator.device if generator is not None else ref.device

    def uniform(a):
        u = torch.rand(ref.shape, generator=generator, device=dev, dtype=torch.float32)
        return ((u * 2 - 1) * a).to(ref.device, ref.dtype)

    out = {}
    if xy:
        out["dx"], out["dy"] = uniform(xy), uniform(xy)
    if shift:
        out["dsize"] = uniform(shift)
    if angle:
        out["dangle"] = uniform(angle)
    return out


PixelCoordinates = Literal["centre", "corner"]


def blob_opacity(layout: Layout, height: int, width: int, ab_norm: float = 0.02,
                 jitter: dict[str, torch.Tensor] | None = None,
                 pixel_coordinates: PixelCoordinates = "centre") -> torch.Tensor:
    """Per-blob opacity ``sigmoid(size - mahalanobis^2)``: (N, K, H, W), before compositing;
    ``jitter``: offsets from :func:`draw_jitter`. Pixel ``j`` of a row sits at ``(j + 0.5) / W``
    (``"centre"``) or at ``j / W`` (``"corner"``, the reference's ``splat_features``)."""
    if pixel_coordinates not in ("centre", "corner"):
        raise ValueError(f"pixel_coordinates must be 'centre' or 'corner', "
                         f"got {pixel_coordinates!r}")
    jitter = jitter or {}
    xs, ys, sizes = layout["xs"], layout["ys"], layout["sizes"][:, 1:]
    if "dx" in jitter:
        xs, ys = xs + jitter["dx"], ys + jitter["dy"]
    if "dsize" in jitter:
        sizes = sizes + jitter["dsize"]
    cov = blob_covariance(layout["covs"], ab_norm, jitter.get("dangle"))
    det = cov[..., 0, 0] * cov[..., 1, 1] - cov[..., 0, 1] * cov[..., 1, 0]
    ia, ib, ic = cov[..., 1, 1] / det, -cov[..., 0, 1] / det, cov[..., 0, 0] / det  # inverse
    offset = 0.5 if pixel_coordinates == "centre" else 0.0
    gx = (torch.arange(width, device=xs.device, dtype=xs.dtype) + offset) / width
    gy = (torch.arange(height, device=xs.device, dtype=xs.dtype) + offset) / height
    dx = (gx - xs[..., None])[..., None, :]  # (N, K, 1, W)
    dy = (gy - ys[..., None])[..., :, None]  # (N, K, H, 1)
    d2 = ia[..., None, None] * dx.square() + 2 * ib[..., None, None] * dx * dy \
        + ic[..., None, None] * dy.square()
    return torch.sigmoid(sizes[..., None, None] - d2)


def composite(alpha: torch.Tensor) -> torch.Tensor:
    """Alpha-composite (N, K, H, W) opacities over an opaque background, later blobs on top.

    Returns (N, K + 1, H, W) weights summing to one, background first.
    """
    transmit = 1 - alpha
    # prod_{j > k} (1 - alpha_j): reverse cumulative product, shifted by one
    behind = torch.flip(torch.cumprod(torch.flip(transmit, [1]), 1), [1])
    after = torch.cat([behind[:, 1:], torch.ones_like(behind[:, :1])], 1)
    return torch.cat([behind[:, :1], alpha * after], 1)


def render_scores(layout: Layout, height: int, width: int, ab_norm: float = 0.02,
                  jitter: dict[str, torch.Tensor] | None = None,
                  pixel_coordinates: PixelCoordinates = "centre") -> torch.Tensor:
    """Composited blob weights (N, K + 1, H, W) of a layout, background first (``jitter``:
    offsets from :func:`draw_jitter`; ``pixel_coordinates``: see :func:`blob_opacity`)."""
    return composite(blob_opacity(layout, height, width, ab_norm, jitter, pixel_coordinates))


def score_pyramid(scores: torch.Tensor, size_in: int) -> dict[int, torch.Tensor]:
    """Halve (N, M, H, W) scores down to height ``size_in``; keyed by height."""
    out = {scores.shape[-2]: scores}
    while scores.shape[-2] > size_in:
        scores = F.avg_pool2d(scores, 2)
        out[scores.shape[-2]] = scores
    return out


# -- edits -------------------------------------------------------------------------------------
def num_blobs(layout: Layout) -> int:
    return layout["xs"].shape[1]


def clone_layout(layout: Layout) -> Layout:
    return {k: v.clone() for k, v in layout.items()}


def select(layout: Layout, index) -> Layout:
    """Scenes ``index`` of a batched layout (keeps the batch dimension)."""
    return {k: v[index] for k, v in layout.items()}


def concat(layouts: list[Layout]) -> Layout:
    return {k: torch.cat([lay[k] for lay in layouts], 0) for k in layouts[0]}


def _check_blob(layout: Layout, k: int) -> int:
    n = num_blobs(layout)
    if not -n <= k < n:
        raise IndexError(f"blob index {k} out of range for a layout with {n} blobs")
    return k % n


def move_blob(layout: Layout, k: int, x: float | torch.Tensor | None = None,
              y: float | torch.Tensor | None = None, dx: float = 0.0, dy: float = 0.0) -> Layout:
    """Blob ``k`` moved to ``(x, y)`` (absolute, in [0, 1]) or by ``(dx, dy)``."""
    k, out = _check_blob(layout, k), clone_layout(layout)
    if x is not None:
        out["xs"][:, k] = x
    if y is not None:
        out["ys"][:, k] = y
    out["xs"][:, k] += dx
    out["ys"][:, k] += dy
    return out


def resize_blob(layout: Layout, k: int, scale: float | None = None,
                size: float | torch.Tensor | None = None) -> Layout:
    """Blob ``k`` with its radius scaled by ``scale``, or its size logit set to ``size``.

    The half-opacity contour is ``d^2 = size`` (for ``size > 0``), so scaling the radius by
    ``scale`` multiplies a positive size by ``scale**2``.
    """
    k, out = _check_blob(layout, k), clone_layout(layout)
    if size is not None:
        out["sizes"][:, k + 1] = size
    if scale is not None:
        s = out["sizes"][:, k + 1]
        out["sizes"][:, k + 1] = torch.where(s > 0, s * scale ** 2, s + 2 * math.log(scale))
    return out


def remove_blob(layout: Layout, k: int) -> Layout:
    """The layout without blob ``k`` (K - 1 blobs)."""
    k = _check_blob(layout, k)
    keep = [i for i in range(num_blobs(layout)) if i != k]
    out = {}
    for key, v in layout.items():
        if key in BLOB_KEYS:
            out[key] = v[:, keep]
        else:
            out[key] = v[:, [0] + [i + 1 for i in keep]]
    return out


def add_blob(layout: Layout, x, y, size, feature: torch.Tensor, style: torch.Tensor,
             covs: torch.Tensor | None = None) -> Layout:
    """The layout with one more blob on top of the others (K + 1 blobs).

    ``covs`` defaults to an isotropic blob (raw ``[0, 0, 1, 0]``).
    """
    n = layout["xs"].shape[0]
    ref = layout["xs"]

    def col(v, shape=()):
        return torch.as_tensor(v, dtype=ref.dtype, device=ref.device).expand(n, *shape)

    if covs is None:
        covs = torch.tensor([0.0, 0.0, 1.0, 0.0])
    out = {
        "xs": torch.cat([layout["xs"], col(x)[:, None]], 1),
        "ys": torch.cat([layout["ys"], col(y)[:, None]], 1),
        "covs": torch.cat([layout["covs"], col(covs, (4,))[:, None]], 1),
        "sizes": torch.cat([layout["sizes"], col(size)[:, None]], 1),
        "features": torch.cat(
            [layout["features"], col(feature, layout["features"].shape[-1:])[:, None]], 1),
        "spatial_style": torch.cat(
            [layout["spatial_style"], col(style, layout["spatial_style"].shape[-1:])[:, None]], 1),
    }
    return out


def set_blob_feature(layout: Layout, k: int, feature: torch.Tensor) -> Layout:
    """Blob ``k``'s feature replaced (``k`` counts blobs; the background is not a blob)."""
    k, out = _check_blob(layout, k), clone_layout(layout)
    out["features"][:, k + 1] = feature
    return out


def set_blob_style(layout: Layout, k: int, style: torch.Tensor) -> Layout:
    k, out = _check_blob(layout, k), clone_layout(layout)
    out["spatial_style"][:, k + 1] = style
    return out
