"""BlobGAN benchmark: training throughput, inversion and counterfactual time per image, and the
splatting step against the reference's formulation, in one process.

    python benchmarks/bench_blobgan.py                 # blobgan_256 and blobgan_256x512 (GPU)
    python benchmarks/bench_blobgan.py --quick         # CPU, tiny presets, < 2 minutes

Figures (medians over ``--repeats`` windows):

- training images/s: one window is ``r1_every`` iterations (so the lazy R1 step is amortised as
  in training), each iteration a discriminator step then a generator step and the EMA update,
  with the same requires_grad toggling as the trainer; images/s = batch / seconds per iteration;
- inversion s/image: ``invert`` (encoder guess + optimisation, OCTET's 400 iterations; 20 in
  quick mode) of a batch, divided by the batch size;
- counterfactual s/image: ``counterfactual`` (OCTET's 100 iterations; 20 in quick mode) of a
  batch, divided by the batch size;
- splatting: ganzoo's separable Mahalanobis form + 2x2 average-pooled pyramid against the
  reference's formulation (``torch.linalg.solve`` on the flattened grid, bilinear halving),
  re-expressed here (the reference repository needs its CUDA extensions and PyTorch Lightning,
  so its model cannot run in this process); the maximum difference of the pyramids is printed.

The reference model itself is not run here; ``tools/compare_blobgan.py`` runs the authors' networks
against ganzoo's on copied weights (docs/blobgan.md, "Against the authors' code").
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, repeats, device, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_training(name, batch, repeats, device):
    import ganzoo

    model = ganzoo.build(name).to(device).train()
    groups = model.optimizer_groups()
    opts = {g: spec.build(model.group_parameters(g)) for g, spec in groups.items()}
    trainable = [p for n, p in model.named_parameters() if not n.startswith("ema.")]
    h, w = model.config.resolution, model.config.width
    real = torch.rand(batch, 3, h, w, device=device) * 2 - 1
    state = {"step": 0}
    every = max(1, model.config.r1_every)

    def window():
        for _ in range(every):
            for g in model.schedule(state["step"]):
                own = {id(p) for p in model.group_parameters(g)}
                for p in trainable:
                    p.requires_grad_(id(p) in own)
                loss, _ = model(g, {"image": real}, state["step"])
                opts[g].zero_grad(set_to_none=True)
                loss.backward()
                opts[g].step()
            model.update_ema(model.default_ema_decay)
            state["step"] += 1

    sec = _timeit(window, repeats, device) / every
    return {"images_per_s": batch / sec, "s_per_iter": sec,
            "params_M": sum(p.numel() for p in trainable) / 1e6}


def bench_inversion_and_cf(name, encoder_name, batch, inv_steps, cf_steps, repeats, device):
    import ganzoo
    from ganzoo.models.blobgan.counterfactual import TinyDecisionCNN, counterfactual
    from ganzoo.models.blobgan.inversion import invert

    model = ganzoo.build(name).to(device).eval()
    enc_kwargs = {"blobgan": name, "resolution": model.config.resolution,
                  "aspect_ratio": model.config.aspect_ratio, "perceptual_weights": "none"}
    enc = ganzoo.build(encoder_name, **enc_kwargs).to(device).eval()
    enc.blobgan.ema.load_state_dict(model.ema.state_dict())
    decision = TinyDecisionCNN(width=16).to(device).eval().requires_grad_(False)
    images = model.sample(batch, generator=torch.Generator().manual_seed(0)).to(device)
    inv = lambda: invert(model, images, encoder=enc, steps=inv_steps, batch_size=batch)  # noqa
    t_inv = _timeit(inv, repeats, device, warmup=0) / batch
    layout = model.sample_layout(batch, generator=torch.Generator().manual_seed(1))
    cf = lambda: counterfactual(model, layout, decision, 1, steps=cf_steps)  # noqa: E731
    t_cf = _timeit(cf, repeats, device, warmup=0) / batch
    return {"inversion_s_per_image": t_inv, "cf_s_per_image": t_cf}


# -- splatting: ganzoo vs the reference formulation --------------------------------------------
def _reference_style_pyramid(layout, size, size_in, ab_norm=0.02):
    """The reference's splatting maths on a square grid: covariance from the raw parameters,
    squared Mahalanobis distance by solving Sigma d = delta on the flattened (N, K, 2, S*S) grid
    at grid points j / S, sigmoid(size - d^2), compositing, bilinear halving down to size_in."""
    from ganzoo.models.blobgan.layout import blob_covariance, composite

    xs, ys = layout["xs"], layout["ys"]
    cov = blob_covariance(layout["covs"], ab_norm)
    ar = torch.arange(size, device=xs.device, dtype=xs.dtype)
    grid = torch.stack([ar.repeat(size), ar.repeat_interleave(size)]) / size  # (2, S*S)
    delta = grid[None, None] - torch.stack([xs, ys], -1)[..., None]  # (N, K, 2, S*S)
    d2 = (delta * torch.linalg.solve(cov, delta)).sum(2).view(*xs.shape, size, size)
    scores = composite(torch.sigmoid(layout["sizes"][:, 1:, None, None] - d2))
    out = {size: scores}
    while scores.shape[-1] > size_in:
        scores = F.interpolate(scores, scale_factor=0.5, mode="bilinear", align_corners=False)
        out[scores.shape[-1]] = scores
    return out


def bench_splat(name, batch, repeats, device):
    import ganzoo
    from ganzoo.models.blobgan.layout import score_pyramid

    model = ganzoo.build(name).to(device)
    cfg = model.config
    with torch.no_grad():
        layout = model.sample_layout(batch, generator=torch.Generator().manual_seed(0))
    s = cfg.resolution
    ours = lambda: score_pyramid(model.blob_scores(layout, s, s), cfg.size_in)  # noqa: E731
    ref = lambda: _reference_style_pyramid(layout, s, cfg.size_in, cfg.ab_norm)  # noqa: E731
    with torch.no_grad():
        t_ours = _timeit(ours, repeats, device)
        t_ref = _timeit(ref, repeats, device)
        # same maths up to the half-pixel offset of ganzoo's grid: shift the blobs by it
        shifted = dict(layout, xs=layout["xs"] + 0.5 / s, ys=layout["ys"] + 0.5 / s)
        a = score_pyramid(model.blob_scores(shifted, s, s), cfg.size_in)
        b = ref()
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    return {"ours_ms": 1e3 * t_ours, "ref_ms": 1e3 * t_ref, "max_abs_diff": diff}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="CPU, tiny presets, < 2 minutes")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (quick mode default: 1, steadier on a shared machine)")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.quick else args.device)
    if args.quick or args.threads:
        torch.set_num_threads(args.threads or 1)
    if args.quick:
        presets = [("test_blobgan", "32x32"), ("test_blobgan_rect", "16x32")]
        encoder, batch, repeats, inv_steps, cf_steps = "test_blobgan_encoder", 4, 3, 20, 20
        splat_preset = "test_blobgan"
    else:
        presets = [("blobgan_256", "256x256"), ("blobgan_256x512", "256x512")]
        encoder, batch, repeats, inv_steps, cf_steps = "blobgan_encoder_256", 8, 5, 400, 100
        splat_preset = "blobgan_256"
    batch = args.batch or batch
    repeats = args.repeats or repeats
    print(f"# BlobGAN benchmark ({'quick, CPU, tiny presets' if args.quick else 'full'}; "
          f"device {device}, {torch.get_num_threads()} CPU thread(s); batch {batch}; "
          f"medians of {repeats})\n")
    print("| preset | size | K | params (M) | train img/s | inversion s/img "
          f"({inv_steps} it) | counterfactual s/img ({cf_steps} it) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, size in presets:
        import ganzoo

        k = ganzoo.model_info(name)["config"]["n_blobs"]
        tr = bench_training(name, batch, repeats, device)
        ic = bench_inversion_and_cf(name, encoder, batch, inv_steps, cf_steps,
                                    max(1, repeats // 2), device)
        print(f"| {name} | {size} | {k} | {tr['params_M']:.2f} | {tr['images_per_s']:.2f} | "
              f"{ic['inversion_s_per_image']:.3f} | {ic['cf_s_per_image']:.3f} |", flush=True)
    sp = bench_splat(splat_preset, batch, repeats, device)
    print("\n| splatting + pyramid | ganzoo (ms) | reference formulation (ms) | ratio | max diff |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {splat_preset}, batch {batch} | {sp['ours_ms']:.2f} | {sp['ref_ms']:.2f} | "
          f"{sp['ref_ms'] / sp['ours_ms']:.2f}x | {sp['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()
