"""The model card (``README.md``) of a saved model, built with huggingface_hub's ``ModelCard``.

The YAML header is what the Hub indexes: ``library_name: ganzoo``, ``pipeline_tag`` (from the
model's task), ``license``, ``datasets`` (Hub dataset ids only, so that every link resolves),
``tags`` and a ``model-index`` holding every evaluation result with its protocol. The body
shows the final sample grid, a usage snippet with the repo id, the evaluations as a table and
the full config.

Card facts are plain JSON, stored under ``"card"`` in ``config.json`` so that a folder can be
re-carded (``ganzoo push`` writes the repo id in) without the run that made it:

- ``dataset``: the training data in words; ``datasets``: Hub dataset ids;
- ``steps``: training iterations; ``license``, ``tags``;
- ``evaluations``: results of ``ganzoo.evaluate`` (``{"metrics", "protocol"}``), e.g. the
  trainer's ``--eval-every`` records; ``metrics`` + ``eval_protocol``, one result in the form
  of ganzoo 0.1, are read as one more evaluation;
- ``sample_grid``: a PNG in the folder (``samples.png``), with ``sample_grid_step``;
- ``best_metric``, ``best_value``, ``best_step``: the trainer's ``best/`` (``--keep-best``),
  the state whose evaluation by ``best_metric`` was the best of its run so far.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

from ._stats import metric_direction

__all__ = ["DEFAULT_LICENSE", "evaluations", "model_card"]

# ganzoo's own licence; weights bound by their training data's terms pass license=... instead.
DEFAULT_LICENSE = "apache-2.0"


def pipeline_tag(task: str) -> str:
    """Deprecated (ganzoo 0.1): a model states its Hub task as ``model.pipeline_tag``."""
    warnings.warn("ganzoo.modelcard.pipeline_tag(task) is deprecated; use the model's "
                  "pipeline_tag property", DeprecationWarning, stacklevel=2)
    return "unconditional-image-generation" if task == "sample" else "image-to-image"


def evaluations(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Every evaluation result the facts hold, oldest first."""
    found = [e for e in facts.get("evaluations") or [] if isinstance(e, dict) and "metrics" in e]
    if facts.get("metrics"):
        found.append({"metrics": facts["metrics"], "protocol": facts.get("eval_protocol") or {}})
    return found


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value):
            out[key] = float(value)
    return out


def _reference(protocol: dict[str, Any], key: str) -> str:
    """The reference a metric was scored against: task families score several outputs
    (``fid/bu``), each against its own reference, and the protocol then maps them."""
    ref = protocol.get("reference")
    if isinstance(ref, dict):
        output = key.split("/", 1)[1] if "/" in key else None
        ref = ref.get(output) or next(iter(ref.values()), None)
    return str(ref) if ref else "unknown"


def _dataset_type(reference: str, protocol: dict[str, Any]) -> str:
    """``dataset:shapes(resolution=32)`` -> ``shapes``; an ``hf`` reference -> its Hub id."""
    kind, _, rest = reference.partition(":")
    if kind != "dataset" or not rest:
        return kind or "unknown"
    name = rest.split("(")[0]
    if name == "hf":
        return str((protocol.get("dataset_kwargs") or {}).get("path", name))
    return name


def _protocol_args(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol fields that make two numbers comparable (N, extractor, resizer, ...)."""
    keys = ("n_fake", "n_real", "feature_extractor", "feature_extractor_weights_id",
            "feature_layers", "resizer", "quantization", "implementation",
            "implementation_version", "resolution", "step", "seed", "ganzoo_version")
    args = {k: protocol[k] for k in keys if protocol.get(k) is not None}
    return json.loads(json.dumps(args, default=str))


def eval_results(facts: dict[str, Any], pipeline_tag: str) -> list:
    """One ``huggingface_hub.EvalResult`` per (evaluation, metric), the newest first."""
    from huggingface_hub import EvalResult

    results = []
    for evaluation in reversed(evaluations(facts)):
        protocol = evaluation.get("protocol") or {}
        step = protocol.get("step")
        for key, value in _numbers(evaluation["metrics"]).items():
            ref = _reference(protocol, key)
            results.append(EvalResult(
                task_type=pipeline_tag, dataset_type=_dataset_type(ref, protocol),
                dataset_name=ref, dataset_split=protocol.get("split"),
                dataset_args=protocol.get("dataset_kwargs") or None,
                metric_type=key, metric_value=value,
                metric_name=f"{key} (step {step})" if step is not None else key,
                metric_config=protocol.get("feature_extractor"),
                metric_args=_protocol_args(protocol) or None))
    return results


def _eval_table(facts: dict[str, Any]) -> list[str]:
    rows = []
    for evaluation in reversed(evaluations(facts)):
        p = evaluation.get("protocol") or {}
        n = f"{p.get('n_fake', '?')} / {p.get('n_real', '?')}"
        for key, value in _numbers(evaluation["metrics"]).items():
            rows.append(f"| {p.get('step', '')} | {key} | {value:.6g} | {n} | "
                        f"{p.get('feature_extractor') or '-'} | {_reference(p, key)} |")
    if not rows:
        return []
    return ["", "## Evaluation", "",
            "Every result with its protocol (all fields: `config.json`, `card.evaluations`).",
            "", "| step | metric | value | N generated / reference | extractor | reference |",
            "| --- | --- | --- | --- | --- | --- |", *rows]


def _best_line(facts: dict[str, Any]) -> list[str]:
    """The best checkpoint's line (``--keep-best``): which metric, its value and step."""
    metric, value = facts.get("best_metric"), facts.get("best_value")
    if not metric or not isinstance(value, (int, float)):
        return []
    way = {"↓": "lower", "↑": "higher"}.get(metric_direction(str(metric)))
    return [f"- **Best checkpoint**: {metric} = {value:.6g} at step {facts.get('best_step')}, "
            f"the best of the run's evaluations so far"
            f"{f' ({way} is better)' if way else ''}"]


def _usage(model, repo: str) -> list[str]:
    shell = (f"ganzoo sample {repo} --input images/ --out-dir outputs/  # one per input"
             if model.takes_inputs else
             f"ganzoo sample {repo} -n 50000 --out-dir samples/  # numbered PNGs, resumable")
    return ["", "## Use", "", "```bash", shell, "```", "",
            "```python", "import ganzoo", "", f'model = ganzoo.from_pretrained("{repo}")',
            model.usage_example, "```"]


def model_card(model, config: dict[str, Any], facts: dict[str, Any],
               repo_id: str | None = None) -> str:
    """The text of ``README.md`` for ``model``; ``repo_id`` goes into the usage snippet (the
    saved folder's path stands there until the model is pushed)."""
    from huggingface_hub import ModelCard, ModelCardData

    name = repo_id.split("/")[-1] if repo_id else (model.preset or type(model).__name__)
    tag = model.pipeline_tag
    tags = ["ganzoo", model.family or "generative",
            "image-to-image" if model.takes_inputs else "image-generation"]
    tags += [t for t in facts.get("tags") or [] if t not in tags]
    results = eval_results(facts, tag)
    data = ModelCardData(
        library_name="ganzoo", pipeline_tag=tag, license=facts.get("license") or DEFAULT_LICENSE,
        datasets=list(facts.get("datasets") or []) or None, tags=tags,
        model_name=name if results else None, eval_results=results or None)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("ema."))
    body = [f"# {name}", "",
            f"A ganzoo `{model.preset or type(model).__name__}` model ({model.family}, "
            f"`{type(model).__name__}`), saved by ganzoo {config['ganzoo_version']}."]
    if facts.get("sample_grid"):
        step = facts.get("sample_grid_step")
        at = f" at step {step}" if step is not None else ""
        body += ["", f"![samples]({facts['sample_grid']})", "",
                 f"*The trainer's fixed-noise sample grid{at}.*"]
    body += ["", f"- **Paper**: {model.paper or 'n/a'}",
             f"- **Task**: `{model.task}` (`{tag}`)",
             f"- **Image size**: {model.image_size[0]}x{model.image_size[1]}, "
             f"{model.channels} channels",
             f"- **Parameters**: {n_params / 1e6:.2f} M (EMA copies not counted)",
             f"- **Training data**: {facts.get('dataset', 'unknown')}"]
    if facts.get("steps") is not None:
        body.append(f"- **Training steps**: {facts['steps']}")
    body += _best_line(facts)
    body += _usage(model, repo_id or "PATH_OR_REPO_ID")
    body += _eval_table(facts)
    body += ["", "## Config", "", "```json", json.dumps(config["config"], indent=2), "```", ""]
    card = ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(body))
    return str(card)
