"""Datasets, registered with ``@register_dataset``.

Every dataset yields dicts; batches are dicts of stacked tensors. Images are float tensors in
[-1, 1] with shape (C, H, W) per item, (N, C, H, W) per batch. Keys by kind of data:

- ``"image"``: unconditional images (plus ``"label"`` or ``"attrs"`` where they exist);
- ``"image_with"`` / ``"image_without"``: attribute pairs (two different scenes, the first with
  the attribute and the second without), for attribute transfer;
- ``"image_a"`` / ``"image_b"``: unpaired images from domains A and B, for translation.

A model lists the keys it reads in ``batch_keys``; the trainer refuses a dataset without them.
"""

from ..registry import build_dataset


def dataset_kwargs_for(model) -> dict:
    """Dataset options that make images fit ``model.image_size`` (H, W): ``resolution`` (the
    height) and, when the model is not square, ``aspect_ratio`` (W / H)."""
    height, width = model.image_size
    kwargs = {"resolution": height}
    if width != height:
        kwargs["aspect_ratio"] = width / height
    return kwargs


def example_batch(model, n: int, seed: int = 0, **overrides) -> dict:
    """``n`` items of ``model.default_dataset`` at the model's size, stacked into a batch (on
    the CPU; ``model.collate`` moves it to the model)."""
    from torch.utils.data import default_collate

    kwargs = {**dataset_kwargs_for(model), "size": max(n, 1), "seed": seed, **overrides}
    ds = build_dataset(model.default_dataset, **kwargs)
    return default_collate([ds[i] for i in range(n)])
