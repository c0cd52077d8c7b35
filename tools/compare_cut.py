"""ganzoo's CUT against the official code on copied weights.

    git clone https://github.com/taesungp/contrastive-unpaired-translation ~/src/cut
    python tools/compare_cut.py --official ~/src/cut                    # 32 px, ResNet-6
    python tools/compare_cut.py --official ~/src/cut --resolution 256 --ngf 64 --ndf 64 \\
        --n-blocks 9

Builds the official ``CUTModel`` (``models/cut_model.py``) and ganzoo's ``cut_reference`` (or
``fastcut_reference`` with ``--mode fastcut``) at the same sizes, copies ganzoo's generator,
discriminator and projection head into the official ``netG``, ``netD`` and ``netF`` (every
parameter mapped, shapes checked), and feeds both the same batch. It prints the outputs'
largest differences per network (the generator, its PatchNCE taps, the discriminator, the
projection head on the same locations, the fixed blur filters), every loss term of one
discriminator and one generator step, and the gradients those losses give. The PatchNCE
locations ganzoo samples are replayed in the official code, so the NCE terms see the same
patches. ``--mode fastcut`` turns the random flip off on both sides (its draw uses different
generators). The figures are in docs/cut.md, "Against the authors' code".

``--train-steps K`` then trains both sides for K iterations from the same weights: ganzoo
through its ``Trainer`` (the code ``ganzoo train`` runs: data loader, optimizer groups, fused
Adam, the loop) on a small unpaired folder, the official model through its
``optimize_parameters``, fed the batches ganzoo's loader gave and the patch locations ganzoo
drew. It prints each step's D and G losses on both sides and, per network after the K
iterations, the largest relative difference of a weight tensor (the conv biases an
InstanceNorm cancels apart) and of the outputs on the last batch: what is left once the
networks and losses agree (the optimizers, their grouping, the order of the updates).
``--train-dtype float64`` keeps rounding near 1e-16, so a difference there is a difference of
the updates; in float32 two correct runs part within a few steps (docs/cut.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ganzoo  # noqa: E402
from _official import (CUT_REPO, checkout, copy_weights, count, importable,  # noqa: E402
                       max_diff, official_cut, print_tables, rel_diff)
from ganzoo.losses.patchnce import l2_normalize  # noqa: E402

REPO = CUT_REPO


def build_official(root: Path, a, mode: str):
    model, _ = official_cut(root, (
        f"--dataroot none --checkpoints_dir {a.tmp} --name compare --batch_size {a.batch} "
        f"--crop_size {a.resolution} --load_size {a.resolution} --ngf {a.ngf} --ndf {a.ndf} "
        f"--netG resnet_{a.n_blocks}blocks --num_patches {a.num_patches}"), mode)
    return model


def _rename(prefix_from: str, prefix_to: str, *pairs: tuple[str, str]):
    def rename(key: str) -> str:
        key = re.sub(f"^{prefix_from}", prefix_to, key)
        for old, new in pairs:
            key = re.sub(old, new, key)
        return key
    return rename


def _recording_randperm(log: list):
    real = torch.randperm

    def randperm(n, *args, **kwargs):
        out = real(n, *args, **kwargs)
        log.append(out.cpu().numpy())
        return out
    return randperm


def _replaying_permutation(log: list):
    """np.random.permutation that returns ganzoo's recorded locations first (the official
    PatchSampleF keeps the first num_patches of a permutation)."""
    def permutation(n):
        ids = log.pop(0)
        rest = np.setdiff1d(np.arange(n), ids)
        return np.concatenate([ids, rest])
    return permutation


def _unpaired_folder(root: Path, size: int, n: int, seed: int) -> Path:
    """``n`` smooth random colour images per domain in ``root/trainA`` and ``root/trainB``."""
    from torchvision.utils import save_image

    g = torch.Generator().manual_seed(seed)
    for side in ("trainA", "trainB"):
        (root / side).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            low = torch.rand(3, 1, size // 4, size // 4, generator=g)
            image = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")
            save_image(image.squeeze(1), root / side / f"{i:03d}.png")
    return root


def _biases_before_instance_norm(net: torch.nn.Module) -> set[str]:
    """Names of conv biases that an InstanceNorm follows: its mean subtraction cancels them,
    so their gradient is zero in exact arithmetic and Adam turns its rounding noise into
    steps of +-lr that change no output. Their values say nothing about the updates."""
    names = set()
    for prefix, module in net.named_modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (name, m), (_, nxt) in zip(children, children[1:]):
                if isinstance(m, torch.nn.Conv2d) and m.bias is not None and \
                        isinstance(nxt, torch.nn.InstanceNorm2d):
                    names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def train_side_by_side(a, root: Path, preset: str, renames: dict) -> float:
    """``a.train_steps`` iterations on both sides from ganzoo's initial weights; prints the
    losses per step and the differences after training; returns the largest (weights that
    act on outputs, relative, and outputs)."""
    from ganzoo.train import parse_run_config
    from ganzoo.training.trainer import Trainer

    tmp = Path(a.tmp)
    data = _unpaired_folder(tmp / "data", a.resolution, 4, a.seed)
    run = parse_run_config([
        "--model", preset, "--dataset", "unpaired", "--set", f"data.root={data}",
        "--set", f"resolution={a.resolution}", "--set", f"ngf={a.ngf}", "--set", f"ndf={a.ndf}",
        "--set", f"n_blocks={a.n_blocks}", "--set", f"num_patches={a.num_patches}",
        "--batch-size", str(a.batch), "--max-steps", str(a.train_steps), "--seed", str(a.seed),
        "--sample-every", "0", "--save-every", "0", "--no-progress", "--overwrite",
        "-o", str(tmp / "run")])
    trainer = Trainer(run)
    ours = trainer.unwrapped
    theirs = build_official(root, a, "CUT" if a.mode == "cut" else "FastCUT")
    shape = (a.batch, 3, a.resolution, a.resolution)
    with importable(root):  # builds netF and its optimizer, as the official train.py does
        theirs.data_dependent_initialize({"A": torch.zeros(shape), "B": torch.zeros(shape),
                                          "A_paths": ["a"] * a.batch, "B_paths": ["b"] * a.batch})
    if a.mode == "fastcut":
        ours._flip = lambda: False
        theirs.opt.flip_equivariance = False
    nets = {"generator": (ours.generator, theirs.netG),
            "discriminator": (ours.discriminator.scales[0], theirs.netD),
            "projector": (ours.projector, theirs.netF)}
    for name, (mine, official) in nets.items():
        copy_weights(mine.state_dict(), official, renames[name])
    dtype = getattr(torch, a.train_dtype)
    ours.to(dtype)  # in place: the Trainer's optimizers keep these parameters
    theirs.netG.to(dtype), theirs.netD.to(dtype), theirs.netF.to(dtype)

    # ganzoo's run, recording each iteration's batch, its losses and its patch locations.
    batches, losses, log = [], [], []
    loss = ours.loss

    def recording_loss(group, batch, step):
        batch = {**batch, "image_a": batch["image_a"].to(dtype),
                 "image_b": batch["image_b"].to(dtype)}
        if group == "discriminator":
            batches.append({"A": batch["image_a"].detach().clone().contiguous(),
                            "B": batch["image_b"].detach().clone().contiguous()})
            losses.append({})
        # the patch locations only (the data loader's sampler draws with randperm too)
        real_randperm, torch.randperm = torch.randperm, _recording_randperm(log)
        try:
            total, logs = loss(group, batch, step)
        finally:
            torch.randperm = real_randperm
        losses[-1][group] = total.item()
        return total, logs

    ours.loss = recording_loss
    try:
        trainer.train()
    finally:
        del ours.loss
    cancelled = {name: {renames[name](k) for k in _biases_before_instance_norm(mine)}
                 for name, (mine, _) in nets.items()}
    final = {name: {renames[name](k): v.detach().clone() for k, v in mine.named_parameters()}
             for name, (mine, _) in nets.items()}
    x = batches[-1]["A"]
    with torch.no_grad():
        ours_out = {"generator": ours.generator(x),
                    "discriminator": ours.discriminator.scales[0](batches[-1]["B"])}

    print(f"\n{a.train_steps} iterations, {preset} through ganzoo's Trainer vs the official "
          f"optimize_parameters, batch {a.batch}, seed {a.seed}, {a.train_dtype}\n")
    print("| step | D loss, ganzoo | D loss, official | \\|Δ\\| | G loss, ganzoo | "
          "G loss, official | \\|Δ\\| |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    real_permutation, np.random.permutation = np.random.permutation, _replaying_permutation(log)
    try:
        for step, (batch, ours_step) in enumerate(zip(batches, losses)):
            theirs.set_input({**batch, "A_paths": ["a"] * a.batch, "B_paths": ["b"] * a.batch})
            theirs.optimize_parameters()
            d, g = ours_step["discriminator"], ours_step["generator"]
            d_ref, g_ref = theirs.loss_D.item(), theirs.loss_G.item()
            print(f"| {step} | {d:.9f} | {d_ref:.9f} | {abs(d - d_ref):.1e} | {g:.9f} | "
                  f"{g_ref:.9f} | {abs(g - g_ref):.1e} |")
    finally:
        np.random.permutation = real_permutation
    with torch.no_grad():
        theirs_out = {"generator": theirs.netG(x), "discriminator": theirs.netD(batches[-1]["B"])}
    worst = 0.0
    print("\n| network | weights, largest relative difference | its conv biases before an "
          "InstanceNorm (no effect on outputs) | outputs on the last batch, max \\|Δ\\| |")
    print("| --- | ---: | ---: | ---: |")
    for name, (_, official) in nets.items():
        named = dict(official.named_parameters())
        diffs = {k: rel_diff(v, named[k].detach()) for k, v in final[name].items()}
        kept = max(d for k, d in diffs.items() if k not in cancelled[name])
        biases = max((d for k, d in diffs.items() if k in cancelled[name]), default=None)
        out = max_diff(ours_out[name], theirs_out[name]) if name in ours_out else None
        worst = max(worst, kept, out or 0.0)
        print(f"| {name} | {kept:.2e} | {'–' if biases is None else f'{biases:.2e}'} | "
              f"{'–' if out is None else f'{out:.2e}'} |")
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", help=f"a checkout of {REPO}")
    p.add_argument("--mode", choices=["cut", "fastcut"], default="cut")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--ndf", type=int, default=16)
    p.add_argument("--n-blocks", type=int, default=6)
    p.add_argument("--num-patches", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp", default="/tmp/ganzoo_compare_cut")
    p.add_argument("--train-steps", type=int, default=0,
                   help="then train both sides this many iterations from the same weights")
    p.add_argument("--train-dtype", choices=["float32", "float64"], default="float32",
                   help="of that training (float64: rounding differences stay near 1e-16, "
                        "so what remains is a difference of the updates)")
    a = p.parse_args(argv)
    root = checkout(a.official, "models/cut_model.py", REPO)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    preset = "cut_reference" if a.mode == "cut" else "fastcut_reference"
    ours = ganzoo.build(preset, resolution=a.resolution, ngf=a.ngf, ndf=a.ndf,
                        n_blocks=a.n_blocks, num_patches=a.num_patches).train()
    theirs = build_official(root, a, "CUT" if a.mode == "cut" else "FastCUT")
    g = torch.Generator().manual_seed(a.seed)
    x = torch.rand(a.batch, 3, a.resolution, a.resolution, generator=g) * 2 - 1
    y = torch.rand(a.batch, 3, a.resolution, a.resolution, generator=g) * 2 - 1
    data = {"A": x, "B": y, "A_paths": ["a"] * a.batch, "B_paths": ["b"] * a.batch}
    with importable(root):
        theirs.data_dependent_initialize(data)  # builds netF, as its train.py does
    if a.mode == "fastcut":  # the flip draws differ between the sides: no flip on either
        ours._flip = lambda: False
        theirs.opt.flip_equivariance = False

    # Copy ganzoo's weights into the official networks.
    (d,) = ours.discriminator.scales
    rename_g = _rename("layers.", "model.", (r"\.branch\.", ".conv_block."))
    copy_weights(ours.generator.state_dict(), theirs.netG, rename_g)
    copy_weights(d.state_dict(), theirs.netD, _rename("model.", "model."))
    copy_weights(ours.projector.state_dict(), theirs.netF,
                 lambda k: re.sub(r"^mlps\.(\d+)\.", r"mlp_\1.", k))
    taps = ours.config.nce_layers

    # The networks on the same inputs.
    rows = []
    with torch.no_grad():
        rows.append(("generator G(a)", count(ours.generator), count(theirs.netG),
                     max_diff(ours.generator(x), theirs.netG(x))))
        feats = ours.generator.encode(x, taps)
        rows.append((f"generator PatchNCE taps {list(taps)}", count(ours.generator),
                     count(theirs.netG), max_diff(feats, theirs.netG(x, list(taps), True))))
        rows.append(("discriminator D(b)", count(d), count(theirs.netD),
                     max_diff(d(y), theirs.netD(y))))
        q, ids = ours.projector(feats, a.num_patches)
        q_ref, _ = theirs.netF(feats, a.num_patches, [i.numpy() for i in ids])
        rows.append(("projection head F (L2-normalised)", count(ours.projector),
                     count(theirs.netF), max_diff([l2_normalize(v, eps=ours.config.nce_eps) for v in q], q_ref)))
        filters = [(m.filt, theirs.netG.model[i].filt) for i, m in enumerate(ours.generator.layers)
                   if hasattr(m, "filt")]
        filters += [(m.filt, theirs.netD.model[i].filt) for i, m in enumerate(d.model)
                    if hasattr(m, "filt")]
        rows.append((f"blur filters ({len(filters)}, fixed buffers)", 0, 0,
                     max_diff([f for f, _ in filters], [r for _, r in filters])))

    # One discriminator and one generator loss on the same batch, and their gradients.
    batch = {"image_a": x, "image_b": y}
    ours.zero_grad(set_to_none=True)
    d_loss, _ = ours.loss("discriminator", batch, 0)
    d_loss.backward()
    grad_d_ours = [p.grad.clone() for p in d.parameters()]
    ours.zero_grad(set_to_none=True)
    log: list = []
    real_randperm, torch.randperm = torch.randperm, _recording_randperm(log)
    try:
        g_loss, g_logs = ours.loss("generator", batch, 0)
    finally:
        torch.randperm = real_randperm
    g_loss.backward()
    theirs.set_input(data)
    theirs.forward()
    for net in (theirs.netG, theirs.netD, theirs.netF):
        net.zero_grad(set_to_none=True)
    theirs.compute_D_loss().backward()
    grad_d = rel_diff(grad_d_ours, [p.grad for p in theirs.netD.parameters()])
    theirs.netD.zero_grad(set_to_none=True)
    real_permutation, np.random.permutation = np.random.permutation, _replaying_permutation(log)
    try:
        theirs.compute_G_loss().backward()
    finally:
        np.random.permutation = real_permutation
    grad_g = rel_diff([p.grad for p in ours.generator.parameters()],
                      [p.grad for p in theirs.netG.parameters()])
    grad_f = rel_diff([p.grad for p in ours.projector.parameters()],
                      [p.grad for p in theirs.netF.parameters()])
    rows += [("D gradients of the D loss (relative)", count(d), count(theirs.netD), grad_d),
             ("G gradients of the G loss (relative)", count(ours.generator), count(theirs.netG),
              grad_g),
             ("F gradients of the G loss (relative)", count(ours.projector), count(theirs.netF),
              grad_f)]
    w_nce = ours.config.nce_weight  # the official loss_NCE holds lambda_NCE
    losses = [("D: ½ (LSGAN real + fake)", d_loss.item(), theirs.loss_D.item()),
              ("G: LSGAN", g_logs["g_adv"].item(), theirs.loss_G_GAN.item()),
              ("G: λ_NCE · PatchNCE(G(a), a)", w_nce * g_logs["nce"].item(),
               theirs.loss_NCE.item())]
    if ours.config.nce_idt:
        losses.append(("G: λ_NCE · PatchNCE(G(b), b)", w_nce * g_logs["nce_idt"].item(),
                       theirs.loss_NCE_Y.item()))
    losses.append(("G: total", g_loss.item(), theirs.loss_G.item()))
    worst = print_tables(rows, losses, (
        f"{preset} vs {REPO} ({a.mode}), {a.resolution} px, ngf {a.ngf}, ndf {a.ndf}, "
        f"ResNet-{a.n_blocks}, {a.num_patches} patches, batch {a.batch}, seed {a.seed}, "
        f"torch {torch.__version__}, float32 on CPU"))
    print(f"\nlargest difference: {worst:.2e}")
    if a.train_steps > 0:
        renames = {"generator": rename_g, "discriminator": _rename("model.", "model."),
                   "projector": lambda k: re.sub(r"^mlps\.(\d+)\.", r"mlp_\1.", k)}
        worst = train_side_by_side(a, root, preset, renames)
        print(f"\nlargest difference after {a.train_steps} iterations (weights that act on "
              f"outputs, relative; outputs): {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
