"""ganzoo's GeneGAN against the authors' TensorFlow code, on copied weights.

    python tools/compare_genegan.py --official PATH [--preset genegan] [--seed 0]
        [--batch-size 4] [--json FILE]

``PATH`` is a checkout of github.com/Prinsphield/GeneGAN (its ``model.py`` and ``dataset.py``
are imported as they are, nothing of them is copied here). The authors' graph is built with
``tf.compat.v1`` (``Model`` of ``model.py``: ``splitter``, ``joiner``, ``discriminator``,
``G_loss``, ``D_loss``), every ganzoo tensor is copied into it through the explicit table of
``weight_map`` (NCHW/OIHW to NHWC/HWIO, the critic's fc rows from (C, H, W) to TensorFlow's
(H, W, C) flattening), and both sides run the same batch. Printed: one markdown table of the
networks (parameter counts, max |difference| of outputs, each network fed the *same* inputs),
one of the loss terms, one of the loss gradients, and one of the BatchNorm running statistics
after one critic step and one generator step. See docs/genegan.md, "Against the authors' code".

Needs ``tensorflow`` (2.x, any CPU build) and ``tf-keras`` (``tf.compat.v1.layers`` needs
Keras 2: ``pip install tensorflow-cpu tf-keras``), which are not ganzoo dependencies. Exit
status 2, with one line on stderr, when the checkout or TensorFlow is missing.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganzoo  # noqa: E402


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


# -- the authors' code ------------------------------------------------------------------------
def check_official(path: str) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"--official {path}: no such directory (a checkout of "
                         f"github.com/Prinsphield/GeneGAN)")
    model_py = root / "model.py"
    if not (model_py.is_file() and (root / "dataset.py").is_file()
            and "def splitter" in model_py.read_text(errors="replace")):
        raise UsageError(f"--official {path}: not a checkout of github.com/Prinsphield/GeneGAN "
                         f"(needs model.py with Model.splitter, and dataset.py)")
    return root.resolve()


def official_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                             capture_output=True, text=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def import_official(root: Path):
    """(the authors' ``model`` module, ``tf.compat.v1``), imported unmodified.

    ``model.py`` says ``import tensorflow as tf`` and uses the 1.x API, so the import sees
    ``tf.compat.v1`` under that name. ``dataset.py`` evaluates ``config.data_dir`` when it is
    imported and raises unless ``./datasets/celebA`` exists, so the import runs in an empty
    temporary folder that has one.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers needs Keras 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf_module
    except ImportError as exc:
        raise UsageError(f"tensorflow is not installed ({exc}); pip install tensorflow-cpu "
                         f"tf-keras") from None
    v1 = tf_module.compat.v1
    v1.disable_v2_behavior()
    v1.logging.set_verbosity(v1.logging.ERROR)
    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "datasets", "celebA"))
        sys.modules["tensorflow"] = v1
        try:
            os.chdir(tmp)
            sys.path.insert(0, str(root))
            spec = importlib.util.spec_from_file_location("genegan_official_model",
                                                          root / "model.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.modules["tensorflow"] = tf_module
            os.chdir(saved_cwd)
            sys.path[:] = saved_path
    try:  # a Keras 3 build fails here, not in the middle of the graph
        v1.layers.batch_normalization  # noqa: B018
    except (AttributeError, ImportError) as exc:
        raise UsageError(f"tf.compat.v1.layers is unavailable ({exc}); pip install tf-keras "
                         f"and set TF_USE_LEGACY_KERAS=1") from None
    return module, v1


class OfficialGraph:
    """One ``Model`` of the authors' code in its own graph and session."""

    def __init__(self, module, v1, batch_size: int, size: int, is_train: bool):
        self.v1 = v1
        self.graph = v1.Graph()
        with self.graph.as_default():
            v1.set_random_seed(0)
            self.model = module.Model(is_train=is_train, nhwc=[batch_size, size, size, 3])
            m = self.model
            self.g_grads = v1.gradients(m.loss_G, m.g_var_list)
            self.d_grads = v1.gradients(m.loss_D, m.d_var_list)
            self.init = v1.global_variables_initializer()
            # the networks' variables: trainable ones and BatchNorm moving statistics, not the
            # RMSProp slots
            self.variables = {v.op.name: v for v in v1.global_variables()
                              if not v.op.name.endswith(("/RMSProp", "/RMSProp_1"))}
        conf = v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        self.sess = v1.Session(graph=self.graph, config=conf)
        self.sess.run(self.init)

    def run(self, fetches, feed):
        """``fetches``: names of ``Model`` attributes, or anything ``Session.run`` takes;
        ``feed``: ``Model`` attribute name -> array (placeholders or any inner tensor)."""
        if isinstance(fetches, list):
            fetches = [getattr(self.model, f) if isinstance(f, str) else f for f in fetches]
        feed = {getattr(self.model, k): v for k, v in feed.items()}
        return self.sess.run(fetches, feed)

    def load(self, values: dict):
        with self.graph.as_default():
            for name, value in values.items():
                self.variables[name].load(value, self.sess)

    def read(self, names):
        return dict(zip(names, self.sess.run([self.variables[n] for n in names])))


# -- the weight table -------------------------------------------------------------------------
def weight_map(config) -> list[tuple[str, str, str]]:
    """(TensorFlow variable, ganzoo state-dict key, layout) for every tensor of both sides.

    Layouts: ``kernel`` OIHW (Conv2d) or IOHW (ConvTranspose2d) -> HWIO / HWOI, both
    ``permute(2, 3, 1, 0)``; ``fc`` (1, C*4*4) flattened (C, H, W) -> (4*4*C, 1) flattened
    (H, W, C) as ``tf.reshape`` of an NHWC map; ``bias4d`` (C,) -> (1, 1, 1, C); ``same``.
    """
    r = config.resolutions[0]
    rows = []

    def conv(tf_scope, key, bn):
        rows.append((f"{tf_scope}/W", f"{key}.conv.weight", "kernel"))
        if bn:
            for tf_name, torch_name in (("gamma", "weight"), ("beta", "bias"),
                                        ("moving_mean", "running_mean"),
                                        ("moving_variance", "running_var")):
                rows.append((f"{tf_scope}/batch_normalization/{tf_name}",
                             f"{key}.norm.bns.{r}.{torch_name}", "same"))

    for i in range(3):
        conv(f"G_splitter/conv{i + 1}", f"splitter.blocks.{i}", bn=i > 0)
    for i in range(2):
        conv(f"G_joiner/deconv{i + 1}", f"joiner.blocks.{i}", bn=True)
    rows.append(("G_joiner/deconv3/W", "joiner.to_rgb.weight", "kernel"))
    rows.append(("G_joiner/b", "joiner.to_rgb.bias", "bias4d"))
    # D_Ax scores Ax (real) and Bx = join(B, x) (fake): the with-attribute critic
    for tf_scope, key in (("D_Ax", "critic_with"), ("D_Be", "critic_without")):
        for i in range(4):
            conv(f"{tf_scope}/conv{i + 1}", f"{key}.blocks.{i}", bn=i > 0)
        rows.append((f"{tf_scope}/fct/W", f"{key}.fc.weight", "fc"))
        rows.append((f"{tf_scope}/fct/b", f"{key}.fc.bias", "same"))
    return rows


def to_tf(t: torch.Tensor, layout: str):
    t = t.detach().float()
    if layout == "kernel":
        t = t.permute(2, 3, 1, 0)
    elif layout == "fc":
        c = t.shape[1] // 16
        t = t.view(1, c, 4, 4).permute(2, 3, 1, 0).reshape(16 * c, 1)
    elif layout == "bias4d":
        t = t.reshape(1, 1, 1, -1)
    return t.contiguous().numpy()


def check_complete(rows, state: dict, official: OfficialGraph) -> None:
    """Every tensor of both sides is in the table once, with matching shapes."""
    tf_names = [r[0] for r in rows]
    keys = [r[1] for r in rows]
    torch_keys = {k for k in state if not k.endswith("num_batches_tracked")}
    problems = []
    if len(set(tf_names)) != len(tf_names) or len(set(keys)) != len(keys):
        problems.append("a tensor is mapped twice")
    if set(official.variables) != set(tf_names):
        theirs = set(official.variables)
        problems.append(f"TensorFlow variables unmapped: {sorted(theirs - set(tf_names))}, "
                        f"mapped but absent: {sorted(set(tf_names) - theirs)}")
    if torch_keys != set(keys):
        problems.append(f"ganzoo tensors unmapped: {sorted(torch_keys - set(keys))}, "
                        f"mapped but absent: {sorted(set(keys) - torch_keys)}")
    for tf_name, key, layout in rows:
        if tf_name in official.variables and key in state:
            got = tuple(to_tf(state[key], layout).shape)
            want = tuple(official.variables[tf_name].shape.as_list())
            if got != want:
                problems.append(f"{key} {got} -> {tf_name} {want}")
    if problems:
        raise AssertionError("weight map: " + "; ".join(problems))


# -- ganzoo side ------------------------------------------------------------------------------
def build_ganzoo(preset: str, seed: int):
    torch.manual_seed(seed)
    try:
        model = ganzoo.build(preset)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"--preset {preset}: {exc}") from None
    c = model.config
    if not (c.arch == "genegan" and tuple(c.resolutions) == (64,) and c.base_channels == 128
            and c.channels == 3 and c.norm == "switchable_bn"):
        raise UsageError(f"--preset {preset}: the authors' network is fixed at 64 px, widths "
                         f"128/256/512, RGB, BatchNorm (arch='genegan', resolutions=(64,), "
                         f"base_channels=128); this preset is not")
    return model


@torch.no_grad()
def perturb_(model, gen: torch.Generator) -> None:
    """Move every tensor off its initial value, so that a swapped or missed mapping shows:
    BatchNorm gamma/beta, running statistics and biases would otherwise be 1s and 0s."""
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith(("norm.bns.64.weight", "running_var")):
            t.copy_(0.5 + torch.rand(t.shape, generator=gen))
        elif name.endswith(("bias", "running_mean")):
            t.copy_(0.1 * torch.randn(t.shape, generator=gen))


def batch(seed: int, n: int) -> dict[str, torch.Tensor]:
    data = ganzoo.build_dataset("shapes_attr", resolution=64, size=max(n, 8), seed=seed)
    return data.render(list(range(n)))


def nhwc255(x: torch.Tensor):
    """ganzoo image in [-1, 1], NCHW -> the authors' 0..255 NHWC."""
    return ((x.detach() + 1) * 127.5).permute(0, 2, 3, 1).contiguous().numpy()


def from_official_image(y) -> torch.Tensor:
    """The authors' joiner output (0..255 NHWC) -> [-1, 1] NCHW."""
    return torch.from_numpy(y).permute(0, 3, 1, 2) / 127.5 - 1


def nhwc(t: torch.Tensor):
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def nchw(y) -> torch.Tensor:
    return torch.from_numpy(y).permute(0, 3, 1, 2)


def maxdiff(a, b) -> float:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).abs().max())


# -- comparisons ------------------------------------------------------------------------------
def compare_networks(model, off: OfficialGraph, au, b0) -> dict[str, float]:
    """Each network on the same inputs: the splitter on the batch, the joiner on ganzoo's
    codes, each critic on the real images and ganzoo's fakes (fed into the authors' graph in
    place of its own upstream tensors). Images in [-1, 1] units, codes and scores as they are.
    """
    r = model.config.resolutions[0]
    with torch.no_grad():
        a, u = model.splitter(au)
        b, eps = model.splitter(b0)
        zero = torch.zeros_like(u)
        au_hat, b0_hat = model.joiner(a, u, r), model.joiner(b, zero, r)
        a0, bu = model.joiner(a, zero, r), model.joiner(b, u, r)
        scores = [model.critic_with(au), model.critic_with(bu),
                  model.critic_without(b0), model.critic_without(a0)]
    feed = {"Ax": nhwc255(au), "Be": nhwc255(b0)}
    codes = off.run(["A", "x", "B", "e"], feed)
    joined = off.run(["Ax2", "Be2", "Ae", "Bx"],
                     {"A": nhwc(a), "x": nhwc(u), "B": nhwc(b), "e": nhwc(eps)})
    critic = off.run(["real_Ax", "fake_Bx", "real_Be", "fake_Ae"],
                     dict(feed, Bx=nhwc255(bu), Ae=nhwc255(a0)))
    return {
        "splitter": max(maxdiff(t, nchw(o)) for t, o in zip((a, u, b, eps), codes)),
        "joiner": max(maxdiff(t, from_official_image(o))
                      for t, o in zip((au_hat, b0_hat, a0, bu), joined)),
        "critic_with": max(maxdiff(t, o[:, 0]) for t, o in zip(scores[:2], critic[:2])),
        "critic_without": max(maxdiff(t, o[:, 0]) for t, o in zip(scores[2:], critic[2:])),
    }


# (label, the authors' tensor, ganzoo log key, ganzoo weight field or None)
LOSS_TERMS = [
    ("nulling mean abs(e)", ("G_loss", "e"), "nulling@{r}", "nulling_weight"),
    ("reconstruction Au (cycle_Ax)", ("G_loss", "cycle_Ax"), "cycle_with@{r}", "cycle_weight"),
    ("reconstruction B0 (cycle_Be)", ("G_loss", "cycle_Be"), "cycle_without@{r}",
     "cycle_weight"),
    ("parallelogram", ("G_loss", "parallelogram"), "parallelogram@{r}",
     "parallelogram_weight"),
    ("G adversarial, with (Bx)", ("G_loss", "Bx"), "g_with@{r}", "adversarial_weight"),
    ("G adversarial, without (Ae)", ("G_loss", "Ae"), "g_without@{r}", "adversarial_weight"),
    ("G weight decay", ("loss_G_decay",), "weight_decay", None),
    ("G total", ("loss_G",), "generator_loss", None),
    ("D with (Ax_Bx)", ("D_loss", "Ax_Bx"), "d_with@{r}", "adversarial_weight"),
    ("D without (Be_Ae)", ("D_loss", "Be_Ae"), "d_without@{r}", "adversarial_weight"),
    ("D total", ("loss_D",), "critic_loss", None),
]

NETWORKS = {"splitter": "G_splitter", "joiner": "G_joiner", "critic_with": "D_Ax",
            "critic_without": "D_Be"}


def _official_tensor(model, path):
    t = getattr(model, path[0])
    return t[path[1]] if len(path) > 1 else t


def compare_losses(model, off: OfficialGraph, rows, au, b0):
    """Each loss term of one generator and one critic step on the batch, and the gradients
    of the two totals; ganzoo's terms are read from ``GeneGAN.loss``'s logs."""
    r = model.config.resolutions[0]
    state = copy.deepcopy(model.state_dict())
    data = {"image_with": au, "image_without": b0}
    logs, grads = {}, {}
    for group in ("generator", "critic"):
        model.zero_grad(set_to_none=True)
        total, group_logs = model.loss(group, data, step=1)
        total.backward()
        logs.update(group_logs)
        nets = ("splitter", "joiner") if group == "generator" else ("critic_with",
                                                                     "critic_without")
        grads.update({k: p.grad.clone() for k, p in model.named_parameters()
                      if k.startswith(tuple(n + "." for n in nets))})
        model.load_state_dict(state)
    m = off.model
    feed = {"Ax": nhwc255(au), "Be": nhwc255(b0)}
    theirs = off.run([_official_tensor(m, path) for _, path, _, _ in LOSS_TERMS], feed)
    losses = {}
    for (label, _, key, weight), official in zip(LOSS_TERMS, theirs):
        ours = float(logs[key.format(r=r)]) * (getattr(model.config, weight) if weight else 1)
        losses[label] = {"ganzoo": ours, "official": float(official),
                         "abs_diff": abs(ours - float(official))}
    return losses, compare_gradients(off, rows, grads, feed)


def compare_gradients(off: OfficialGraph, rows, grads, feed):
    """Per network: the largest gradient, the largest difference, and the difference relative
    to the gradient in L2 norm. The max can be dominated by a few elements whose LeakyReLU /
    ReLU input or L1 residual is within rounding of 0 and takes the other branch on one side
    (a ~1e-7 difference of the forward pass flips a slope from 0.2 to 1); the L2 ratio shows
    whether the rest agrees."""
    m = off.model
    names = [v.op.name for v in m.g_var_list] + [v.op.name for v in m.d_var_list]
    values = dict(zip(names, off.run(off.g_grads + off.d_grads, feed)))
    out, sums = {}, {}
    for tf_name, key, layout in rows:
        if key not in grads:
            continue  # BatchNorm running statistics: no gradient
        net = key.split(".")[0]
        ours = torch.from_numpy(to_tf(grads[key], layout)).double()
        theirs = torch.from_numpy(values[tf_name]).double()
        entry = out.setdefault(net, {"max_abs_grad": 0.0, "abs_diff": 0.0, "tensors": 0})
        entry["max_abs_grad"] = max(entry["max_abs_grad"], float(ours.abs().max()))
        entry["abs_diff"] = max(entry["abs_diff"], maxdiff(ours, theirs))
        entry["tensors"] += 1
        sq = sums.setdefault(net, [0.0, 0.0])
        sq[0] += float((ours - theirs).square().sum())
        sq[1] += float(ours.square().sum())
    for net, entry in out.items():
        entry["rel_l2_diff"] = (sums[net][0] / max(sums[net][1], 1e-300)) ** 0.5
    return out


def compare_test_mode(model, off_test: OfficialGraph, au, b0):
    """``eval()`` against the authors' ``Model(is_train=False)`` (test.py: moving statistics):
    each network as in ``compare_networks``, and ``transfer`` against test.py's
    ``swap_attribute`` (``Ae``, ``Bx`` of the whole graph)."""
    model.eval()
    try:
        nets = compare_networks(model, off_test, au, b0)
        a0, bu = model.transfer(au, b0)
    finally:
        model.train()
    ae, bx = off_test.run(["Ae", "Bx"], {"Ax": nhwc255(au), "Be": nhwc255(b0)})
    nets["transfer (A0, Bu)"] = max(maxdiff(a0, from_official_image(ae)),
                                    maxdiff(bu, from_official_image(bx)))
    return nets


BN_STEPS = [  # (column, ganzoo group, generator_bn_update, the authors' op)
    ("critic step", "critic", "generator_steps", "d_opt"),
    ("critic step, all_steps", "critic", "all_steps", "d_opt"),
    ("generator step", "generator", "generator_steps", "g_opt"),
]


def compare_bn_updates(model, off: OfficialGraph, rows, au, b0, lr: float):
    """BatchNorm running statistics after one critic step and after one generator step
    (separately, each from the copied state): the authors' ``d_opt`` / ``g_opt`` run every
    ``UPDATE_OPS`` of the graph; ganzoo's are updated by the forward passes of ``loss``, with
    ganzoo's default ``generator_bn_update`` and with the official "all_steps"."""
    stats = [(tf_name, key) for tf_name, key, _ in rows if key.endswith(("running_mean",
                                                                         "running_var"))]
    state = copy.deepcopy(model.state_dict())
    initial = {tf_name: to_tf(state[key], "same") for tf_name, key in stats}
    data = {"image_with": au, "image_without": b0}
    feed = {"Ax": nhwc255(au), "Be": nhwc255(b0), "g_lr": lr, "d_lr": lr}
    out, default = {}, model.config.generator_bn_update
    for column, group, setting, op in BN_STEPS:
        off.load({tf_name: to_tf(state[key], layout) for tf_name, key, layout in rows})
        off.run([op], feed)
        theirs = off.read([tf_name for tf_name, _ in stats])
        model.config.generator_bn_update = setting
        try:
            with torch.no_grad():
                model.loss(group, data, step=1)
        finally:
            model.config.generator_bn_update = default
        ours = model.state_dict()
        for tf_name, key in stats:
            e = out.setdefault(key.split(".")[0], {}).setdefault(
                column, {"abs_diff": 0.0, "updated_ganzoo": False, "updated_official": False})
            e["abs_diff"] = max(e["abs_diff"], maxdiff(ours[key], theirs[tf_name]))
            e["updated_ganzoo"] |= maxdiff(ours[key], initial[tf_name]) > 0
            e["updated_official"] |= maxdiff(theirs[tf_name], initial[tf_name]) > 0
        model.load_state_dict(state)
    return out


def param_counts(model, off: OfficialGraph) -> dict[str, tuple[int, int]]:
    out = {}
    trainable = off.model.g_var_list + off.model.d_var_list
    for net, scope in NETWORKS.items():
        ours = sum(p.numel() for p in getattr(model, net).parameters())
        theirs = sum(v.shape.num_elements() for v in trainable
                     if v.op.name.startswith(scope + "/"))
        out[net] = (ours, theirs)
    return out


def compare(official: str, preset: str, seed: int, batch_size: int) -> dict:
    root = check_official(official)
    model = build_ganzoo(preset, seed)
    module, v1 = import_official(root)
    size = model.config.resolutions[0]
    train_graph = OfficialGraph(module, v1, batch_size, size, is_train=True)
    test_graph = OfficialGraph(module, v1, batch_size, size, is_train=False)
    perturb_(model, torch.Generator().manual_seed(seed + 1))
    rows = weight_map(model.config)
    state = model.state_dict()
    for graph in (train_graph, test_graph):
        check_complete(rows, state, graph)
        graph.load({tf_name: to_tf(state[key], layout) for tf_name, key, layout in rows})
    data = batch(seed, batch_size)
    au, b0 = data["image_with"], data["image_without"]
    initial = copy.deepcopy(state)
    model.train()
    train_nets = compare_networks(model, train_graph, au, b0)
    model.load_state_dict(initial)  # the training-mode passes moved the running statistics
    test_nets = compare_test_mode(model, test_graph, au, b0)
    losses, grads = compare_losses(model, train_graph, rows, au, b0)
    bn = compare_bn_updates(model, train_graph, rows, au, b0, model.config.lr)
    return {
        "official": str(root), "official_commit": official_commit(root), "preset": preset,
        "seed": seed, "batch_size": batch_size,
        "tensorflow": sys.modules["tensorflow"].__version__,
        "torch": torch.__version__,
        "params": param_counts(model, train_graph), "networks_batch_stats": train_nets,
        "networks_running_stats": test_nets, "losses": losses, "gradients": grads,
        "bn_updates": bn,
    }


# -- report -----------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    lines = [f"official: {res['official']} @ {res['official_commit']}; ganzoo preset "
             f"{res['preset']}, seed {res['seed']}, batch {res['batch_size']}; "
             f"TensorFlow {res['tensorflow']}, torch {res['torch']}", ""]
    lines += ["| module | official | params ganzoo | params official | max abs diff, batch "
              "statistics (training) | max abs diff, moving statistics (test) |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for net, scope in NETWORKS.items():
        ours, theirs = res["params"][net]
        lines.append(f"| {net} | {scope} | {ours:,} | {theirs:,} | "
                     f"{res['networks_batch_stats'][net]:.2e} | "
                     f"{res['networks_running_stats'][net]:.2e} |")
    lines.append(f"| transfer (A0, Bu) | test.py swap_attribute (Ae, Bx) | | | | "
                 f"{res['networks_running_stats']['transfer (A0, Bu)']:.2e} |")
    lines += ["", "| loss term | ganzoo | official | abs diff |", "| --- | ---: | ---: | ---: |"]
    for label, v in res["losses"].items():
        lines.append(f"| {label} | {v['ganzoo']:.7g} | {v['official']:.7g} | "
                     f"{v['abs_diff']:.2e} |")
    lines += ["", "| gradient of | network | max abs gradient | max abs diff | "
              "L2 diff / L2 norm |", "| --- | --- | ---: | ---: | ---: |"]
    for net, v in res["gradients"].items():
        total = "G total" if net in ("splitter", "joiner") else "D total"
        lines.append(f"| {total} | {net} | {v['max_abs_grad']:.3e} | {v['abs_diff']:.2e} | "
                     f"{v['rel_l2_diff']:.2e} |")
    columns = [c for c, _, _, _ in BN_STEPS]
    lines += ["", "BatchNorm running statistics after one step from the copied state: max abs "
              "diff (updated by ganzoo / by the official step)", "",
              "| network | " + " | ".join(f"after one {c}" for c in columns) + " |",
              "| --- |" + " ---: |" * len(columns)]
    yn = {True: "yes", False: "no"}
    for net, v in res["bn_updates"].items():
        cells = [f"{v[c]['abs_diff']:.2e} ({yn[v[c]['updated_ganzoo']]} / "
                 f"{yn[v[c]['updated_official']]})" for c in columns]
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True,
                        help="checkout of github.com/Prinsphield/GeneGAN")
    parser.add_argument("--preset", default="genegan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    try:
        if args.batch_size < 2:
            raise UsageError(f"--batch-size must be >= 2 (BatchNorm), got {args.batch_size}")
        res = compare(args.official, args.preset, args.seed, args.batch_size)
    except UsageError as exc:
        print(f"compare_genegan: {exc}", file=sys.stderr)
        return 2
    print(markdown(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
