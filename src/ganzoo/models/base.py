"""The model API every family implements, and that the trainer alone relies on.

A family is a :class:`GenerativeModel`: an ``nn.Module`` holding its named networks and a typed
dataclass config. It declares

- ``optimizer_groups()``: which networks each optimizer trains, with default hyperparameters;
- ``loss(group, batch, step)``: the scalar loss of one group for one batch, plus detached logs;
- ``schedule(step)``: the groups stepped in one training iteration, in order (by default each
  group ``spec.steps`` times, so ``n_critic = 2`` is ``OptimizerSpec(steps=2)``);
- ``after_step(group, step)``: post-step hooks such as critic weight clipping;
- its task method: ``sample(n, generator=None)`` for unconditional families, ``translate``,
  ``transfer`` or ``reconstruct`` where the family's task is that;
- ``generate(batch, n, generator, **options)``: the one task entry point. Every caller outside
  the family (``ganzoo sample``, :mod:`ganzoo.sampling`, ``ganzoo.evaluate``, the report's
  figures) reaches the task through it and reads its outputs by name; ``eval_references``
  says, for each output, how to view the dataset for the reference side, and
  ``sampling_options`` names the keyword options the task takes (DDPM's sampler and steps);
- ``preview(batch, n, generator)``: the images of the trainer's fixed sample grid and of
  ``ganzoo sample``'s grid, laid out from ``generate``'s outputs.

``forward(group, batch, step)`` is ``loss``: the trainer calls the (possibly DDP-wrapped)
module, so gradient synchronisation goes through Accelerate unchanged.

Every model also states its output geometry, ``image_size`` (H, W) and ``channels``: the
trainer, ``ganzoo.evaluate``, the CLI and the README table read these and nothing else.

Shared behaviour lives here, so that families cannot drift apart:

- ``inference()``: the context task methods run in (no grad, eval mode, the previous mode of
  every submodule restored), so a task method gives the same output in train and eval mode;
- ``randn(...)``: where noise is drawn: on ``generator``'s device when one is given (so a CPU
  generator gives the same noise on every device), else on the model's device, as diffusers'
  ``randn_tensor``; then moved to the model's device;
- EMA copies of the networks named in ``ema_networks`` live in ``self.ema`` (saved under the
  ``ema.`` prefix). ``model.use_ema`` is the one switch between EMA and live weights:
  ``inference_net(name)`` returns the EMA copy when there is one and ``use_ema`` is on, and
  every task method goes through it;
- ``forward`` checks the optimizer group once for every family.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.utils.data import default_collate

from .. import config as cfg, hub

__all__ = ["GenerativeModel", "SquareImages", "OptimizerSpec", "Batch", "SharedForward",
           "SHARED_FORWARD", "INPUT", "DONOR"]

Batch = dict[str, torch.Tensor]

# Batch keys of images given from outside a dataset (``ganzoo sample --input DIR --donor
# IMAGE``): ``generate`` maps each ``INPUT`` image to one output, its task's output for that
# image (a translation, a reconstruction, the image without its attribute, or with the
# ``DONOR``'s attribute for an attribute-transfer model).
INPUT = "input"
DONOR = "donor"


# The call each task's model card shows (GenerativeModel.usage_example).
_USAGE = {"sample": "images = model.sample(16)  # (16, C, H, W) in [-1, 1]",
          "translate": "fake_b = model.translate(images_a)  # (N, C, H, W) in [-1, 1]",
          "reconstruct": "recon = model.reconstruct(images)  # (N, C, H, W) in [-1, 1]",
          "transfer": "a0, bu = model.transfer(with_attr, without_attr)  # swap the attribute"}


# The batch key under which the trainer hands each batch of an iteration's first set a
# SharedForward (the batches that every group's first step sees).
SHARED_FORWARD = "shared_forward"


class SharedForward:
    """Carries one micro-batch's forward pass from one group's step to a later group's step
    of the same iteration, as pytorch/examples ``dcgan/main.py`` generates one fake batch for
    both its D and G updates. The trainer puts one in each batch of an iteration's first set
    (``batch[SHARED_FORWARD]``); a plain object, so DDP and Accelerate pass it through
    untouched. Without a trainer (a bare ``model.loss`` call) there is none, and every step
    computes its own."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = None

    def put(self, value) -> None:
        self.value = value

    def take(self):
        """The value put, once (``None`` if none): its graph is freed with the last use."""
        value, self.value = self.value, None
        return value


@dataclass
class OptimizerSpec:
    """One optimizer group: the networks it trains and its default hyperparameters."""

    networks: tuple[str, ...]
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    momentum: float = 0.0  # rmsprop and sgd
    alpha: float = 0.99  # rmsprop smoothing constant (TensorFlow's "decay")
    steps: int = 1  # times this group steps per training iteration (n_critic)
    clip_grad_norm: float | None = None
    # Networks outside the group that its first step of an iteration may run with a graph,
    # which a later group of the iteration backpropagates through (a GAN's D step makes the
    # fakes its G step reuses: see SharedForward). The trainer lets them build a graph during
    # that step only; this group's loss must not reach them (it uses the outputs detached).
    graph_networks: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.networks:
            raise ValueError("OptimizerSpec.networks must name at least one network")
        if self.lr <= 0:
            raise ValueError(f"OptimizerSpec.lr must be positive, got {self.lr}")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"OptimizerSpec.alpha must be in [0, 1), got {self.alpha}")
        if self.steps < 0:
            raise ValueError(f"OptimizerSpec.steps must be >= 0, got {self.steps}")

    def build(self, params, fused: bool = False) -> torch.optim.Optimizer:
        """The optimizer over ``params``. ``fused`` picks the fused kernels where torch has
        them (Adam, AdamW, SGD); those can also skip a step on the device, without a host
        sync, when given a ``found_inf`` flag (see the trainer's non-finite guard)."""
        params = list(params)
        fast = {"fused": True} if fused else {}
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                    weight_decay=self.weight_decay, **fast)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                     weight_decay=self.weight_decay, **fast)
        if self.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr, alpha=self.alpha, eps=self.eps,
                                       momentum=self.momentum, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay, **fast)
        raise ValueError(f"OptimizerSpec.optimizer must be adam, adamw, rmsprop or sgd, "
                         f"got {self.optimizer!r}")


def _ema_slots(net: nn.Module) -> tuple[list[tuple[dict, str]], list[tuple[dict, str]]]:
    """Where the tensors an EMA averages and those it copies live, as (``_parameters`` or
    ``_buffers`` dict, key) pairs in a fixed order: parameters and BatchNorm running statistics
    are averaged, every other buffer is copied. A tensor shared by two modules counts once.

    Slots, not tensors: ``Module.to`` and ``Module.compile`` keep the modules but ``to``
    replaces buffer tensors, so ``update_ema`` reads the tensors through the slots at each call.
    Walking the modules at each call instead cost 0.35 ms of Python per network and iteration
    for ``dcgan`` and 2.6 ms for ``ddpm_32`` (2-core CPU), host time a launch-bound GPU waits
    for (docs/training.md, "EMA").
    """
    averaged, copied, seen = [], [], set()
    for m in net.modules():
        stats = ("running_mean", "running_var") \
            if isinstance(m, nn.modules.batchnorm._BatchNorm) else ()
        for slots in (m._parameters, m._buffers):
            for key, tensor in slots.items():
                if tensor is None or id(tensor) in seen:
                    continue
                seen.add(id(tensor))
                keep = slots is m._parameters or key in stats
                (averaged if keep else copied).append((slots, key))
    return averaged, copied


class GenerativeModel(nn.Module):
    """Base class of every ganzoo family. Subclasses set the class attributes below."""

    config_class: ClassVar[type]
    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""  # "Authors, Title, venue year (arXiv id)"
    task: ClassVar[Literal["sample", "translate", "transfer", "reconstruct"]] = "sample"
    batch_keys: ClassVar[tuple[str, ...]] = ("image",)  # keys ``loss`` reads from a batch
    default_dataset: ClassVar[str] = "shapes"  # embedded dataset giving ``batch_keys``
    ema_networks: ClassVar[tuple[str, ...]] = ()
    default_ema_decay: ClassVar[float] = 0.999
    # The trainer's EMA warm-up (training.schedules.ema_decay_at): the averaging window after
    # t iterations is (1 + t) ** power, capped by default_ema_decay.
    default_ema_warmup_power: ClassVar[float] = 2 / 3
    default_ema_start: ClassVar[int] = 0  # iterations during which the EMA copies the live weights
    # Device types (``torch.device.type``) on which the trainer runs the model and its batches
    # in channels_last unless told otherwise (--channels-last / --no-channels-last): only where
    # it was measured to help this family (docs/training.md, "Speed options").
    default_channels_last: ClassVar[frozenset[str]] = frozenset()
    # The groups of an iteration share its batches: the k-th step of every group takes the
    # iteration's k-th set (the loops of pytorch/examples dcgan, CUT, BlobGAN's Lightning
    # module). False: every group step draws its own (GeneGAN's train.py).
    shares_batches: ClassVar[bool] = True
    # The augmentation (ganzoo.datasets.transforms) the trainer gives a training dataset that
    # takes one, unless the run sets ``data.augment``: for a family whose reference trains
    # with one (cut_reference: crop_flip, the CUT code's resize_and_crop + flip).
    default_augment: str = "none"
    # Output name of ``generate`` -> dataset overrides that give its reference images.
    eval_references: ClassVar[dict[str, dict[str, Any]]] = {"sample": {}}
    # Keyword options of the task that ``generate`` (and ``preview``) pass on to the task
    # method, name -> what it sets. ``ganzoo sample`` refuses a flag whose option the model
    # does not list (DDPM: ``sampler``, ``num_inference_steps``, ``eta``).
    sampling_options: ClassVar[dict[str, str]] = {}

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        self.preset: str | None = None
        self.ema = nn.ModuleDict()
        self.use_ema = True

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config=None, *, preset: str | None = None, **overrides):
        """Build from a config (the class default if None) with checked field overrides."""
        config = cfg.override(config if config is not None else cls.config_class(), overrides)
        model = cls(config)
        model.preset = preset
        model.init_ema()
        return model

    def init_ema(self) -> None:
        """Create frozen EMA copies of ``ema_networks`` (idempotent)."""
        for name in self.ema_networks:
            if name not in self.ema:
                net = copy.deepcopy(getattr(self, name))
                net.requires_grad_(False)
                self.ema[name] = net

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * live`` for parameters and BatchNorm running
        statistics; every other buffer is copied.

        Averaging the running means and variances with the weights keeps them matched to the
        averaged weights they normalise; copying the live network's statistics (ganzoo 0.1)
        pairs the EMA weights with statistics of other weights (measured in
        ``docs/training.md``, "EMA"). Other buffers are copied, not averaged: an average of
        spectral norm's power-iteration vectors is no longer a unit vector, and counters
        (``num_batches_tracked``) are integers. The trainer passes
        ``training.schedules.ema_decay_at(step, ...)``.
        """
        cache = self.__dict__.setdefault("_ema_slot_cache", {})
        for name, ema_net in self.ema.items():
            live = getattr(self, name)
            hit = cache.get(name)
            if hit is None or hit[0] is not ema_net or hit[1] is not live:
                hit = cache[name] = (ema_net, live, _ema_slots(ema_net), _ema_slots(live))
            (ema_avg, ema_copy), (live_avg, live_copy) = hit[2], hit[3]
            ema_t = [d[k] for d, k in ema_avg]
            live_t = [d[k] for d, k in live_avg]
            if decay == 0.0:
                torch._foreach_copy_(ema_t, live_t)
            else:
                torch._foreach_lerp_(ema_t, live_t, 1.0 - decay)
            if ema_copy:
                torch._foreach_copy_([d[k] for d, k in ema_copy], [d[k] for d, k in live_copy])

    @torch.no_grad()
    def ema_is_live_copy(self) -> bool:
        """Every EMA network equals its live one: the trainer copies the live weights until
        ``default_ema_start`` (or ``--ema-start``), so a shorter run's "EMA" is its live
        weights. False without EMA networks."""
        return len(self.ema) > 0 and all(
            torch.equal(a, b) for name, net in self.ema.items()
            for a, b in zip(net.state_dict().values(), getattr(self, name).state_dict().values()))

    def inference_net(self, name: str) -> nn.Module:
        """The network that task methods use: the EMA copy when there is one."""
        if self.use_ema and name in self.ema:
            return self.ema[name]
        return getattr(self, name)

    @contextmanager
    def inference(self):
        """No gradients and eval mode (BatchNorm running statistics, no dropout) for the whole
        model; on exit every submodule gets back its own previous mode."""
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                yield self
        finally:
            for m, mode in modes:
                m.training = mode

    def randn(self, *shape: int, generator: torch.Generator | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
        """Standard-normal noise of ``shape`` on the model's device: drawn on ``generator``'s
        device when one is given (a CPU generator gives the same noise on every device), else
        on the model's device (the rule of diffusers' ``randn_tensor``)."""
        device = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=device,
                           dtype=dtype).to(self.device)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images the task method returns."""
        raise NotImplementedError(f"{type(self).__name__} must define image_size (H, W)")

    @property
    def channels(self) -> int:
        """Channels of the images the task method returns."""
        raise NotImplementedError(f"{type(self).__name__} must define channels")

    @property
    def config_dict(self) -> dict[str, Any]:
        return cfg.to_dict(self.config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- training contract ------------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        raise NotImplementedError

    @property
    def double_backward_networks(self) -> tuple[str, ...]:
        """Networks whose loss differentiates through an input gradient (gradient penalty,
        R1): ``torch.compile`` cannot run double backward, so the trainer's ``--compile``
        leaves them eager."""
        return ()

    def compile_networks(self) -> list[str]:
        """The networks ``--compile`` compiles: every trained one, not in
        ``double_backward_networks``, in group order."""
        names = [n for spec in self.optimizer_groups().values() for n in spec.networks]
        skip = set(self.double_backward_networks)
        return [n for n in dict.fromkeys(names) if n not in skip]

    def group_parameters(self, group: str) -> list[nn.Parameter]:
        spec = self.optimizer_groups()[group]
        seen, params = set(), []
        for name in spec.networks:
            for p in getattr(self, name).parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def schedule(self, step: int) -> list[str]:
        """The groups stepped in training iteration ``step``, in order."""
        return [g for g, spec in self.optimizer_groups().items() for _ in range(spec.steps)]

    def loss(self, group: str, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss of ``group`` (one of ``optimizer_groups()``, checked by ``forward``)."""
        raise NotImplementedError

    def forward(self, group: str, batch: Batch, step: int = 0):
        """``loss`` after checking ``group``: the trainer and DDP call the model, so an
        unknown group fails here, in one place, for every family."""
        groups = self.__dict__.get("_group_names")
        if groups is None:
            groups = self.__dict__["_group_names"] = tuple(self.optimizer_groups())
        if group not in groups:
            raise KeyError(f"{type(self).__name__} has no optimizer group {group!r}"
                           f"{cfg.did_you_mean(group, groups)} "
                           f"(groups: {', '.join(groups)})")
        return self.loss(group, batch, step)

    def after_step(self, group: str, step: int) -> None:
        """Called after each optimizer step of ``group`` (e.g. weight clipping)."""

    # -- task -------------------------------------------------------------------------------
    @property
    def takes_inputs(self) -> bool:
        """Whether the task maps input images to outputs (translate, transfer, reconstruct):
        ``generate`` then needs a batch, and there are no unconditional samples to write."""
        return self.task != "sample"

    @property
    def pipeline_tag(self) -> str:
        """The Hugging Face Hub's name for the task (its model cards' ``pipeline_tag``)."""
        return "image-to-image" if self.takes_inputs else "unconditional-image-generation"

    @property
    def usage_example(self) -> str:
        """The line of Python a model card shows under ``model = ganzoo.from_pretrained(...)``."""
        return _USAGE[self.task]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is a '{self.task}' model; "
                                  f"it does not sample unconditionally")

    def check_sampling_options(self, options: dict[str, Any]) -> None:
        """Refuse options the task does not take (``sampling_options``) with one line."""
        unknown = [k for k in options if k not in self.sampling_options]
        if unknown:
            takes = ", ".join(self.sampling_options) or "none"
            raise ValueError(f"{self.preset or type(self).__name__} takes no sampling option "
                             f"{', '.join(unknown)} (its sampling options: {takes})")

    def generate(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                 **options: Any) -> dict[str, torch.Tensor]:
        """The task's outputs, by name: the one entry point to sampling, translation,
        transfer and reconstruction.

        Args:
            batch: ``None`` for an unconditional model (it ignores any batch); else a batch of
                the model's dataset (what ``ganzoo.evaluate`` and the trainer pass: the
                outputs named in ``eval_references``), or images from outside a dataset:
                ``{INPUT: x}``, with ``{DONOR: d}`` (one image, (1, C, H, W)) for an
                attribute-transfer model. An ``INPUT`` batch gives one output per image.
            n: outputs per name (the first ``n`` images of a batch).
            generator: draws the noise (``GenerativeModel.randn``), so outputs depend only on
                its seed.
            options: the task's keyword options (``sampling_options``); others raise.

        Returns ``{name: (n, C, H, W) in [-1, 1]}``, the task's main output first (the one a
        writer of one image per input keeps). The default samples unconditionally:
        ``{"sample": self.sample(n, generator, **options)}``.
        """
        self.check_sampling_options(options)
        return {"sample": self.sample(n, generator=generator, **options)}

    def preview(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                **options: Any) -> torch.Tensor:
        """Images for a sample grid (the trainer's, with fixed noise / fixed inputs, and
        ``ganzoo sample``'s): by default the main output of ``generate``; task families put
        their inputs above their outputs."""
        return next(iter(self.generate(batch, n, generator, **options).values()))

    def collate(self, items: list[dict[str, Any]] | Batch) -> Batch:
        """Dataset items (stacked by torch's ``default_collate``), or a batch already stacked,
        as a batch on the model's device: how every caller outside the trainer (evaluation,
        the report, ``ganzoo sample``'s grid) feeds ``generate`` and ``preview``."""
        batch = items if isinstance(items, dict) else default_collate(list(items))
        device = self.device
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    # -- weights ----------------------------------------------------------------------------
    def save_pretrained(self, save_directory, *, push_to_hub: bool = False,
                        repo_id: str | None = None, **kwargs):
        """Weights, config and card into ``save_directory`` (see :func:`ganzoo.hub.save_pretrained`,
        whose keywords match huggingface_hub's ModelHubMixin)."""
        return hub.save_pretrained(self, save_directory, push_to_hub=push_to_hub, repo_id=repo_id,
                               **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload to the Hub in one commit (see :func:`ganzoo.hub.push_to_hub`: ``private``,
        ``token``, ``branch``, ``create_pr``, ``allow_patterns``, ... and card facts)."""
        return hub.push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir=None,
                        force_download: bool = False, local_files_only: bool = False,
                        **overrides):
        """``Family.from_pretrained(folder_or_repo_id)``, as on a ModelHubMixin class: loads
        through :func:`ganzoo.hub.from_pretrained` (which rebuilds the saved preset through the
        registry) and checks the saved model is a ``cls``."""
        model = hub.from_pretrained(pretrained_model_name_or_path, revision, token=token,
                                cache_dir=cache_dir, force_download=force_download,
                                local_files_only=local_files_only, **overrides)
        if not isinstance(model, cls):
            raise TypeError(f"{pretrained_model_name_or_path} holds a {type(model).__name__} "
                            f"(preset {model.preset!r}), not a {cls.__name__}")
        return model

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}"


class SquareImages:
    """Geometry of a family whose config has ``resolution`` and ``channels`` and whose task
    returns square images (DCGAN, WGAN-GP, VAE, DDPM). Listed before ``GenerativeModel``."""

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.resolution, self.config.resolution

    @property
    def channels(self) -> int:
        return self.config.channels
