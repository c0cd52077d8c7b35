"""Evaluation: FID, KID, IS, precision/recall (torch-fidelity), MiFID, LPIPS diversity, PSNR, SSIM.

``ganzoo.evaluate`` (re-exported here) scores a model, image folder, dataset or tensor against a
reference, caches the reference statistics on disk and returns the values with the full
protocol. Metrics are registered with ``@register_metric`` (``ganzoo.list_metrics()``); feature
extractors with :func:`ganzoo.metrics.extractors.register_feature_extractor` or the
``ganzoo.feature_extractors`` entry-point group. Importing this package does not import
torch-fidelity; that happens when a feature metric runs.
"""

from .evaluation import build_metrics, evaluate, metric_keys

__all__ = ["evaluate", "build_metrics", "metric_keys"]
