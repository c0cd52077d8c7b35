"""Datasets, registered with ``@register_dataset``.

Every dataset yields dicts; batches are dicts of stacked tensors. Images are float tensors in
[-1, 1] with shape (C, H, W) per item, (N, C, H, W) per batch. Keys by kind of data:

- ``"image"``: unconditional images (plus ``"label"`` or ``"attrs"`` where they exist);
- ``"image_with"`` / ``"image_without"``: attribute pairs (two different scenes, the first with
  the attribute and the second without), for attribute transfer;
- ``"image_a"`` / ``"image_b"``: unpaired images from domains A and B, for translation.

A model lists the keys it reads in ``batch_keys``; the trainer refuses a dataset without them.
"""
