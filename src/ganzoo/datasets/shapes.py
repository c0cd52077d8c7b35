"""Embedded synthetic datasets: coloured shapes, rendered on the fly, no download.

Each item is a pure function of ``(seed, index)``: its parameters come from a generator seeded
with both, so any subset, order, batch size or number of workers gives the same images. Items
are rendered in batches (``__getitems__``, used by ``DataLoader``) with signed-distance
functions on a pixel grid, anti-aliased over one pixel, at any resolution and aspect ratio.

- ``shapes``: one to three shapes (disc, square, triangle) on a two-colour gradient.
- ``shapes_attr``: a large central shape with or without a binary attribute (a bright
  "marker" disc inside the shape, at a fixed place relative to it, like a smile on a face).
- ``shapes_unpaired``: domain A ("photo": shaded shapes) and domain B ("painting": a pastel
  palette, outlines and brush-stroke texture) with the same content distribution.
- ``shapes_scenes``: a horizon, sky and ground with two to five objects in perspective, square or
  rectangular; ``label`` is 1 when the largest object is left of centre.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch.utils.data import Dataset

from ..registry import register_dataset
from .transforms import Augment, augment_at_epoch, augment_fn

__all__ = ["ShapesDataset", "ShapesAttrDataset", "ShapesUnpairedDataset", "ShapesScenesDataset"]

_MAX_SHAPES = 3


def _uniforms(seed: int, indices, k: int) -> torch.Tensor:
    """(N, k) uniforms; row i depends only on (seed, indices[i])."""
    g = torch.Generator()
    rows = []
    for i in indices:
        g.manual_seed((int(seed) * 1_000_003 + int(i) * 7_919 + 17) % (2**63 - 1))
        rows.append(torch.rand(k, generator=g))
    return torch.stack(rows)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Both axes in units of the height, so shapes stay round in rectangular images.
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / h
    return ys.view(1, 1, h, 1), xs.view(1, 1, 1, w)


def _sdf(kind, cx, cy, r, theta, ys, xs) -> torch.Tensor:
    """Signed distance (negative inside) of discs/squares/triangles, shapes (N, S, H, W)."""
    p = lambda t: t[..., None, None]  # noqa: E731 - (N, S) -> (N, S, 1, 1)
    dx, dy = xs - p(cx), ys - p(cy)
    c, s = torch.cos(p(theta)), torch.sin(p(theta))
    u, v = dx * c + dy * s, -dx * s + dy * c
    rr = p(r)
    disc = torch.sqrt(u * u + v * v) - rr
    square = torch.maximum(u.abs(), v.abs()) - 0.8 * rr
    tri = torch.maximum(u.abs() * 0.866 + v * 0.5, -v) - 0.5 * rr
    k = p(kind)
    return torch.where(k < 1, disc, torch.where(k < 2, square, tri))


def _alpha(sdf: torch.Tensor, h: int) -> torch.Tensor:
    return (0.5 - sdf * h).clamp(0.0, 1.0)


def _composite(base: torch.Tensor, alphas: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Paint layers in order: base (N,3,H,W), alphas (N,S,H,W), colours (N,S,3,H,W) or (N,S,3)."""
    if colours.dim() == 3:
        colours = colours[..., None, None]
    img = base
    for s in range(alphas.shape[1]):
        a = alphas[:, s:s + 1]
        img = img * (1 - a) + colours[:, s] * a
    return img


def _gradient_background(u: torch.Tensor, ys, xs, h, w) -> torch.Tensor:
    """Two-colour gradient in a random direction; u holds 7 uniforms per image."""
    c1, c2 = u[:, 0:3], u[:, 3:6]
    ang = u[:, 6] * 2 * math.pi
    t = (xs * torch.cos(ang).view(-1, 1, 1, 1) + ys * torch.sin(ang).view(-1, 1, 1, 1))
    t = (t - t.amin(dim=(2, 3), keepdim=True)) / (t.amax(dim=(2, 3), keepdim=True)
                                                  - t.amin(dim=(2, 3), keepdim=True) + 1e-6)
    return c1[..., None, None] * (1 - t) + c2[..., None, None] * t


class _Synthetic(Dataset):
    """Shared plumbing: size, seed, resolution, optional augmentation, batched rendering."""

    keys: tuple[str, ...] = ("image",)

    def __init__(self, resolution: int = 64, size: int = 10_000, seed: int = 0,
                 augment: Augment = "none", aspect_ratio: float = 1.0):
        if not 8 <= int(resolution) <= 1024:
            raise ValueError(f"resolution must be in [8, 1024], got {resolution}")
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if aspect_ratio <= 0:
            raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
        self.resolution = int(resolution)
        self.height = self.resolution
        self.width = int(round(self.resolution * aspect_ratio))
        self.size = int(size)
        self.seed = int(seed)
        self.aspect_ratio = float(aspect_ratio)
        self._augment = augment_fn(augment)
        # crop_flip's decay phase (datasets/transforms.py): set by the datasets that take it.
        self._augment_name, self.crop_until_epoch, self.epoch = augment, None, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list[dict[str, torch.Tensor]]:
        indices = [int(i) for i in indices]
        for i in indices:
            if not -self.size <= i < self.size:
                raise IndexError(f"index {i} out of range for {type(self).__name__} "
                                 f"of size {self.size}")
        indices = [i % self.size for i in indices]
        # Small chunks keep the (N, S, H, W) intermediates in cache: ~2x faster than one go.
        chunks = [self.render(indices[i:i + 16]) for i in range(0, len(indices), 16)]
        batch = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
        items = [{k: v[j] for k, v in batch.items()} for j in range(len(indices))]
        augment = self._augment
        phase = augment_at_epoch(self._augment_name, self.crop_until_epoch, self.epoch)
        if phase != self._augment_name:
            augment = augment_fn(phase)
        if augment is not None:
            for item in items:
                for k, v in item.items():
                    if k.startswith("image"):
                        item[k] = augment(v)
        return items

    def render(self, indices) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def _to_signed(img: torch.Tensor) -> torch.Tensor:
        return (img.clamp(0, 1) * 2 - 1).contiguous()


class ShapesDataset(_Synthetic):
    """One to three coloured shapes on a gradient. Keys: ``image``, ``label`` (shape count - 1)."""

    keys = ("image", "label")

    def render(self, indices) -> dict[str, torch.Tensor]:
        return self._render(indices, self.seed)

    def _render(self, indices, seed, style: Literal["flat", "photo", "painting"] = "flat"):
        h, w = self.height, self.width
        ys, xs = _grid(h, w)
        u = _uniforms(seed, indices, 8 + 8 * _MAX_SHAPES)
        img = _gradient_background(u[:, :7], ys, xs, h, w)
        n_shapes = 1 + (u[:, 7] * _MAX_SHAPES).long().clamp(max=_MAX_SHAPES - 1)
        p = u[:, 8:].view(-1, _MAX_SHAPES, 8)
        kind = p[..., 0] * 3
        cx = 0.15 + 0.7 * p[..., 1] * self.aspect_ratio
        cy = 0.15 + 0.7 * p[..., 2]
        r = 0.1 + 0.18 * p[..., 3]
        theta = p[..., 4] * 2 * math.pi
        colour = p[..., 5:8]
        present = torch.arange(_MAX_SHAPES).view(1, -1) < n_shapes.view(-1, 1)
        sdf = _sdf(kind, cx, cy, r, theta, ys, xs)
        alpha = _alpha(sdf, h) * present[..., None, None]
        colours = _style_colours(colour, sdf, r, style, u, ys, xs)
        if style == "painting":
            img = _pastel(img)
        img = _composite(img, alpha, colours)
        if style == "painting":
            img = _brush(img, sdf, alpha, u, ys, xs, h)
        return {"image": self._to_signed(img), "label": n_shapes - 1}


def _style_colours(colour, sdf, r, style, u, ys, xs):
    if style == "flat":
        return colour
    if style == "photo":  # Lambert-like shading: lighter towards the upper left.
        shade = (0.8 - 0.45 * sdf / r[..., None, None]).clamp(0.55, 1.15)
        return (colour[..., None, None] * shade[:, :, None]).clamp(0, 1)
    return _pastel(colour[..., None, None])


def _pastel(c: torch.Tensor) -> torch.Tensor:
    """Monet-like palette: pull towards warm light tones and quantise to a few levels."""
    warm = torch.tensor([0.95, 0.85, 0.65]).view(3, 1, 1)  # channels at dim -3
    c = 0.55 * c + 0.45 * warm
    return torch.round(c * 6) / 6


def _brush(img, sdf, alpha, u, ys, xs, h):
    """Dark outlines at shape edges and diagonal brush-stroke texture."""
    edge = ((sdf * h).abs() < 1.0).float() * (alpha > 0).float()
    edge = edge.amax(dim=1, keepdim=True)
    phase = (u[:, 0] * 2 * math.pi).view(-1, 1, 1, 1)
    strokes = 0.06 * torch.sin(60 * (xs + 0.5 * ys) + phase) * torch.sin(9 * ys + phase)
    img = img + strokes
    return img * (1 - 0.6 * edge)


@register_dataset
def shapes(resolution: int = 64, size: int = 10_000, seed: int = 0,
           augment: Augment = "none") -> ShapesDataset:
    """Coloured shapes on gradients, unconditional (``image``)."""
    return ShapesDataset(resolution=resolution, size=size, seed=seed, augment=augment)


class ShapesAttrDataset(_Synthetic):
    """A large central shape with or without an attribute (a bright marker disc inside it).

    ``subset="pairs"`` yields ``image_with`` (scene i, with the attribute) and ``image_without``
    (a different scene, without it), for attribute transfer; ``"with"``/``"without"`` yield
    ``image`` from that side only, for evaluation references; all yield ``attrs``.
    """

    def __init__(self, resolution: int = 64, size: int = 10_000, seed: int = 0,
                 subset: Literal["pairs", "with", "without"] = "pairs",
                 augment: Augment = "none"):
        super().__init__(resolution, size, seed, augment)
        if subset not in ("pairs", "with", "without"):
            raise ValueError(f"subset must be 'pairs', 'with' or 'without', got {subset!r}")
        self.subset = subset
        self.keys = ("image_with", "image_without", "attrs") if subset == "pairs" \
            else ("image", "attrs")

    def _scene(self, indices, attr: bool) -> torch.Tensor:
        h, w = self.height, self.width
        ys, xs = _grid(h, w)
        # The two sides draw scenes from disjoint index streams (different "identities").
        offset = 0 if attr else 10**9
        u = _uniforms(self.seed, [i + offset for i in indices], 16)
        img = _gradient_background(u[:, :7], ys, xs, h, w)
        kind = (u[:, 7:8] * 3)
        cx = (0.4 + 0.2 * u[:, 8:9]) * self.aspect_ratio
        cy = 0.4 + 0.2 * u[:, 9:10]
        r = 0.26 + 0.08 * u[:, 10:11]
        theta = u[:, 11:12] * 2 * math.pi / 3
        colour = 0.15 + 0.6 * u[:, None, 12:15]
        sdf = _sdf(kind, cx, cy, r, theta, ys, xs)
        img = _composite(img, _alpha(sdf, h), colour)
        if attr:
            # Marker: fixed place relative to the shape (up and to the right of its centre).
            mk = _sdf(torch.zeros_like(cx), cx + 0.3 * r, cy - 0.3 * r, 0.32 * r,
                      torch.zeros_like(cx), ys, xs)
            img = _composite(img, _alpha(mk, h), torch.tensor([1.0, 0.95, 0.3]).view(1, 1, 3))
        return self._to_signed(img)

    def render(self, indices) -> dict[str, torch.Tensor]:
        n = len(indices)
        if self.subset == "pairs":
            return {"image_with": self._scene(indices, True),
                    "image_without": self._scene(indices, False),
                    "attrs": torch.tensor([[1.0, 0.0]]).repeat(n, 1)}
        attr = self.subset == "with"
        return {"image": self._scene(indices, attr),
                "attrs": torch.full((n, 1), float(attr))}


@register_dataset
def shapes_attr(resolution: int = 64, size: int = 10_000, seed: int = 0,
                subset: Literal["pairs", "with", "without"] = "pairs",
                augment: Augment = "none") -> ShapesAttrDataset:
    """Shapes with and without a binary attribute, for attribute transfer (GeneGAN)."""
    return ShapesAttrDataset(resolution=resolution, size=size, seed=seed, subset=subset,
                             augment=augment)


class ShapesUnpairedDataset(ShapesDataset):
    """Two domains of the same content: A "photo" (shaded), B "painting" (pastel, brushed).

    ``domain="both"`` yields independent ``image_a`` and ``image_b``; ``"a"``/``"b"`` yield
    ``image`` from one domain. Item i pairs A scene i with B scene i of another seed stream;
    ``pairing="random"`` draws the B scene uniformly with replacement at every load, and
    ``crop_until_epoch`` ends ``crop_flip``'s crop, as the ``unpaired`` folders do.
    """

    def __init__(self, resolution: int = 64, size: int = 10_000, seed: int = 0,
                 domain: Literal["both", "a", "b"] = "both",
                 augment: Augment = "none", pairing: Literal["fixed", "random"] = "fixed",
                 crop_until_epoch: int | None = None):
        super().__init__(resolution, size, seed, augment)
        if domain not in ("both", "a", "b"):
            raise ValueError(f"domain must be 'both', 'a' or 'b', got {domain!r}")
        if pairing not in ("fixed", "random"):
            raise ValueError(f"pairing must be 'fixed' or 'random', got {pairing!r}")
        if crop_until_epoch is not None and crop_until_epoch < 0:
            raise ValueError(f"crop_until_epoch must be >= 0, got {crop_until_epoch}")
        self.domain, self.pairing, self.crop_until_epoch = domain, pairing, crop_until_epoch
        self.keys = ("image_a", "image_b") if domain == "both" else ("image",)

    def set_epoch(self, epoch: int) -> None:
        """The data epoch of the items loaded next (the trainer calls it before each load)."""
        self.epoch = int(epoch)

    def render(self, indices) -> dict[str, torch.Tensor]:
        # Domain B uses another seed stream: unpaired, never the same scene.
        partners = indices
        if self.pairing == "random" and self.domain == "both":  # torch's RNG, as the folders
            partners = torch.randint(self.size, (len(indices),)).tolist()
        a = lambda: self._render(indices, self.seed, "photo")["image"]  # noqa: E731
        b = lambda: self._render(partners, self.seed + 7_777_777, "painting")["image"]  # noqa
        if self.domain == "both":
            return {"image_a": a(), "image_b": b()}
        return {"image": a() if self.domain == "a" else b()}


@register_dataset
def shapes_unpaired(resolution: int = 64, size: int = 10_000, seed: int = 0,
                    domain: Literal["both", "a", "b"] = "both",
                    augment: Augment = "none", pairing: Literal["fixed", "random"] = "fixed",
                    crop_until_epoch: int | None = None) -> ShapesUnpairedDataset:
    """Unpaired "photo" and "painting" shapes, for unpaired translation (CUT)."""
    return ShapesUnpairedDataset(resolution=resolution, size=size, seed=seed, domain=domain,
                                 augment=augment, pairing=pairing,
                                 crop_until_epoch=crop_until_epoch)


class ShapesScenesDataset(_Synthetic):
    """Street-like layouts: sky, ground and 2-5 objects in perspective.

    ``label`` is 1 when the largest object's centre is left of the image centre (a toy
    decision for counterfactuals). Rectangular with ``aspect_ratio`` (width / height).
    """

    keys = ("image", "label")
    max_objects = 5

    def render(self, indices) -> dict[str, torch.Tensor]:
        h, w = self.height, self.width
        ys, xs = _grid(h, w)
        k = self.max_objects
        u = _uniforms(self.seed, indices, 8 + 7 * k)
        horizon = (0.35 + 0.15 * u[:, 0]).view(-1, 1, 1, 1)
        sky = torch.stack([0.45 + 0.3 * u[:, 1], 0.6 + 0.3 * u[:, 1], 0.95 * torch.ones_like(u[:, 1])], 1)
        ground = torch.stack([0.25 + 0.3 * u[:, 2], 0.25 + 0.25 * u[:, 2], 0.25 + 0.2 * u[:, 3]], 1)
        t = ys.expand(-1, 1, h, w)
        img = torch.where(t < horizon, sky[..., None, None] * (0.7 + 0.3 * t / horizon),
                          ground[..., None, None] * (0.8 + 0.4 * (t - horizon)))
        n_obj = 2 + (u[:, 4] * (k - 1)).long().clamp(max=k - 2)
        p = u[:, 8:].view(-1, k, 7)
        depth = p[..., 0]  # 0 far (near the horizon) .. 1 near
        cy = horizon.view(-1, 1) + (0.95 - horizon.view(-1, 1)) * (0.1 + 0.9 * depth)
        r = 0.04 + 0.14 * depth
        cx = (0.05 + 0.9 * p[..., 1]) * self.aspect_ratio
        kind = p[..., 2] * 3
        theta = torch.zeros_like(kind)
        colour = p[..., 3:6]
        present = torch.arange(k).view(1, -1) < n_obj.view(-1, 1)
        # Paint far objects first so nearer ones occlude them.
        order = torch.argsort(torch.where(present, depth, -1.0), dim=1)
        take = lambda t: torch.gather(t, 1, order)  # noqa: E731
        kind, cx, cy, r, present = map(take, (kind, cx, cy - r, r, present))
        colour = torch.gather(colour, 1, order[..., None].expand(-1, -1, 3))
        sdf = _sdf(kind, cx, cy, r, theta, ys, xs)
        alpha = _alpha(sdf, h) * present[..., None, None]
        img = _composite(img, alpha, colour)
        size = torch.where(present, r, -1.0)
        largest = size.argmax(dim=1, keepdim=True)
        label = (torch.gather(cx, 1, largest).squeeze(1) < self.aspect_ratio / 2).long()
        return {"image": self._to_signed(img), "label": label}


@register_dataset
def shapes_scenes(resolution: int = 64, size: int = 10_000, seed: int = 0,
                  aspect_ratio: float = 1.0,
                  augment: Augment = "none") -> ShapesScenesDataset:
    """Multi-object scene layouts, square or rectangular, for layout GANs (BlobGAN)."""
    return ShapesScenesDataset(resolution=resolution, size=size, seed=seed, augment=augment,
                               aspect_ratio=aspect_ratio)
