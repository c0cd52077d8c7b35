"""Benchmark CUT: training images/s (batch 1, the reference's setting, and batch 4) and
translation images/s, for ganzoo and, side by side in this process, the reference
implementation (taesungp/contrastive-unpaired-translation) when a checkout of it is given.

    python benchmarks/bench_cut.py                      # 256 px, cuda if available
    python benchmarks/bench_cut.py --quick              # CPU, small sizes (see below)
    python benchmarks/bench_cut.py --reference-dir ~/src/contrastive-unpaired-translation

A training iteration is what ``ganzoo.train`` does per step: for each optimizer group
(discriminator, then generator + projection head) toggle ``requires_grad``, compute the loss,
backward, clip at max-norm 10, Adam step; then the generator's EMA update. Rows:

- ``ganzoo cut``: the baseline preset (DiffAugment, identity warm-up, clipping, EMA);
- ``ganzoo cut, reference-matched``: the same networks with the training frame of the
  reference's run (no DiffAugment, no identity loss, no clipping, no EMA);
- ``reference CUT``: the reference's ``CUTModel.optimize_parameters`` with ``--nce_idt False``
  (it has no hinge loss; it runs LSGAN, which costs the same).

``--quick`` runs on CPU at 32 px with ngf = ndf = 16 and 64 patches per layer (the ResNet-9
layout is kept, the channel widths are 1/4), so the figures are for the path, not for the
256 px model. Timings are medians over ``--repeats`` iterations after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import ganzoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from _official import importable, official_cut  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, repeats: int, device) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _batch(n, size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image_a": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device),
            "image_b": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device)}


def ganzoo_trainer_step(model, use_ema: bool, clip: bool):
    """A closure running one training iteration the way the trainer does."""
    groups = model.optimizer_groups()
    params = {g: model.group_parameters(g) for g in groups}
    opts = {g: spec.build(params[g]) for g, spec in groups.items()}
    owned = {g: {id(p) for p in ps} for g, ps in params.items()}
    all_params = [p for n, p in model.named_parameters() if not n.startswith("ema.")]
    state = {"step": 0}

    def run(batch):
        for group in model.schedule(state["step"]):
            for p in all_params:
                p.requires_grad_(id(p) in owned[group])
            opts[group].zero_grad(set_to_none=True)
            loss, _ = model.loss(group, batch, state["step"])
            loss.backward()
            if clip and groups[group].clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(params[group], groups[group].clip_grad_norm)
            opts[group].step()
        if use_ema:
            model.update_ema(model.default_ema_decay)
        state["step"] += 1

    return run


def build_reference(ref_dir, batch_size, size, ngf, ndf, num_patches, device):
    """The reference's CUTModel (CUT mode, no identity NCE), or None with a reason."""
    if not ref_dir or not os.path.isdir(os.path.join(ref_dir, "models")):
        return None, "no --reference-dir given (a checkout of " \
                     "taesungp/contrastive-unpaired-translation)"
    try:
        gpu = "0" if device.type == "cuda" else "-1"
        model, opt = official_cut(Path(ref_dir), (
            f"--dataroot none --gpu_ids {gpu} --checkpoints_dir {tempfile.mkdtemp()} "
            f"--name bench --nce_idt False --batch_size {batch_size} --crop_size {size} "
            f"--load_size {size} --ngf {ngf} --ndf {ndf} --num_patches {num_patches}"))
        data = {"A": torch.rand(batch_size, 3, size, size) * 2 - 1,
                "B": torch.rand(batch_size, 3, size, size) * 2 - 1,
                "A_paths": ["a"] * batch_size, "B_paths": ["b"] * batch_size}
        with importable(Path(ref_dir)):
            model.data_dependent_initialize(data)
            model.setup(opt)
            model.parallelize()
        return (model, data), None
    except Exception as e:  # noqa: BLE001 - report and go on with ganzoo only
        return None, f"reference failed to build: {type(e).__name__}: {e}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="CPU, 32 px, ngf=ndf=16")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--reference-dir", default=os.environ.get("CUT_REFERENCE_DIR"))
    p.add_argument("--translate-batch", type=int, default=None)
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.quick else args.device)
    if args.quick:
        size, ngf, ndf, patches, repeats = 32, 16, 16, 64, args.repeats or 3
        tbatch = args.translate_batch or 4
    else:
        size, ngf, ndf, patches, repeats = 256, 64, 64, 256, args.repeats or 10
        tbatch = args.translate_batch or 8
    torch.manual_seed(0)
    arch = dict(resolution=size, ngf=ngf, ndf=ndf, num_patches=patches)
    matched = dict(diffaugment="", identity_warm_weight=0.0, clip_grad_norm=None)
    rows = []  # (what, batch, images/s)
    ref_note = None
    for bs in (1, 4):
        batch = _batch(bs, size, device)
        model = ganzoo.build("cut", **arch).to(device).train()
        step = ganzoo_trainer_step(model, use_ema=True, clip=True)
        rows.append(("ganzoo cut", "train", bs,
                     bs / _median_seconds(lambda: step(batch), repeats, device)))
        model = ganzoo.build("cut", **arch, **matched).to(device).train()
        step = ganzoo_trainer_step(model, use_ema=False, clip=False)
        t_match = _median_seconds(lambda: step(batch), repeats, device)
        rows.append(("ganzoo cut, reference-matched", "train", bs, bs / t_match))
        ref, ref_note = build_reference(args.reference_dir, bs, size, ngf, ndf, patches, device)
        if ref is not None:
            rmodel, data = ref

            def ref_step():
                rmodel.set_input(data)
                rmodel.optimize_parameters()

            t_ref = _median_seconds(ref_step, repeats, device)
            rows.append(("reference CUT (nce_idt False)", "train", bs, bs / t_ref))
        del model
    # Translation throughput (EMA generator, no grad).
    model = ganzoo.build("cut", **arch).to(device).eval()
    x = _batch(tbatch, size, device)["image_a"]
    rows.append(("ganzoo cut translate (EMA)", "translate", tbatch,
                 tbatch / _median_seconds(lambda: model.translate(x), repeats, device)))
    if ref is not None:
        net = rmodel.netG.eval()

        def ref_translate():
            with torch.no_grad():
                net(x)

        rows.append(("reference netG", "translate", tbatch,
                     tbatch / _median_seconds(ref_translate, repeats, device)))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nCUT benchmark on {name} ({torch.get_num_threads()} threads), {size} px, "
          f"ngf={ngf}, ndf={ndf}, {patches} patches/layer, median of {repeats}"
          + (" [--quick: reduced sizes]" if args.quick else ""))
    print("\n| what | mode | batch | images/s |\n| --- | --- | ---: | ---: |")
    for what, mode, bs, ips in rows:
        print(f"| {what} | {mode} | {bs} | {ips:.2f} |")
    ref_rows = {(m, b): v for w, m, b, v in rows if w.startswith("reference")}
    if ref_rows:
        print("\nganzoo (reference-matched) / reference speed ratio:")
        for w, m, b, v in rows:
            matched_row = w.startswith(("ganzoo cut, reference-matched", "ganzoo cut translate"))
            if matched_row and (m, b) in ref_rows:
                print(f"- {m} batch {b}: {v / ref_rows[(m, b)]:.2f}x")
    else:
        print(f"\nReference not run: {ref_note}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
