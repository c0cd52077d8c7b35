"""Run one experiment of the multi-resolution GeneGAN queue (EXP00-EXP06): train, then FID.

One command per experiment, for example::

    python examples/genegan_experiments.py EXP00 --data-root /data/celeba --output-root outputs
    python examples/genegan_experiments.py EXP06b --data-root /data/celeba \\
        --output-root outputs --vqvae-ckpt vqvae.safetensors --vqvae-map vq_map.json

Each experiment

1. trains ``genegan_multires`` with the experiment's config options through the ganzoo
   trainer (``ganzoo.train.main``) for ``--duration`` (default 3h; a duration stop or SIGINT /
   SIGTERM finishes the step and saves a checkpoint; ``--keep 2`` newest checkpoints are
   kept), on CelebA split by ``--attribute`` (Smiling) at 128 px. A second run of the same
   command resumes from the newest checkpoint instead of starting over;
2. evaluates FID(Bu -> with_attr) and FID(A0 -> without_attr) at 128 px with N = 5000 through
   ``ganzoo.evaluate`` (real statistics are cached) and writes the result, with its protocol,
   to ``<exp dir>/fid_128_n5000.json``.

``--list`` shows the experiments, ``--dry-run`` prints the equivalent ``python -m ganzoo.train``
and ``ganzoo eval`` commands without running them. ``--dataset shapes_attr --model test_genegan_multires`` gives a
CPU smoke test (with ``--feature-extractor test_random_cnn`` when the Inception weights are
not available offline). Trainer flags after ``--`` are passed through, e.g.
``-- --save-every 20000 --sample-every 20000``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# name -> (directory slug, GeneGANConfig options, what it tests)
EXPERIMENTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "EXP00": ("multires_64_96_128_sharedtrunk_switchbn_wgan", {},
              "baseline: 64/96/128 in and out, shared trunks, SwitchableBN"),
    "EXP01": ("multires_objblockconv", {"obj_blockconv": True, "obj_block_size": 4},
              "residual block-conv on the object subspace at the bottleneck"),
    "EXP01b": ("multires_blockconv_both",
               {"obj_blockconv": True, "obj_block_size": 4, "blockconv_subspace": "both"},
               "block-conv on both subspaces (ablation of EXP01)"),
    "EXP02": ("multires_128in_multiscale_loss", {"multiscale_outputs": True},
              "128 px in, 1x1 heads at 64/96, multi-scale cycle + parallelogram losses"),
    "EXP02b": ("multires_128in_multiscale_critics",
               {"multiscale_outputs": True, "multiscale_critics": True},
               "EXP02 with per-scale critics"),
    "EXP03": ("multires_random_res", {"multi_res_mode": "random"},
              "one resolution per iteration, drawn uniformly (vs EXP00's all)"),
    "EXP04": ("multires_groupnorm", {"norm": "group_norm", "norm_groups": 32},
              "GroupNorm(32) instead of SwitchableBN in G and D"),
    "EXP05a": ("multires_weight_s2", {"scale_weighting": "s2"},
               "loss weights proportional to s^2 (vs EXP00's equal)"),
    "EXP05b": ("multires_weight_inv_s2", {"scale_weighting": "inv_s2"},
               "loss weights proportional to 1/s^2"),
    "EXP06a": ("multires_no_vqinit", {}, "control of EXP06b (no VQ-VAE init)"),
    "EXP06b": ("multires_vqinit", {}, "splitter/joiner warm-started from a VQ-VAE checkpoint"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", nargs="?", choices=sorted(EXPERIMENTS), metavar="EXPERIMENT",
                   help=", ".join(EXPERIMENTS))
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--output-root", default="outputs", help="experiment folders go here")
    p.add_argument("--model", default="genegan_multires")
    p.add_argument("--dataset", default="celeba", help="celeba, or shapes_attr for a smoke test")
    p.add_argument("--data-root", help="CelebA folder (celeba only)")
    p.add_argument("--attribute", default="Smiling")
    p.add_argument("--resolution", type=int, help="dataset and FID resolution "
                   "(default: the model's largest, 128)")
    p.add_argument("--duration", default="3h")
    p.add_argument("--keep", type=int, default=2, help="newest checkpoints kept")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vqvae-ckpt", help="EXP06b: VQ-VAE state dict (.safetensors or .pt)")
    p.add_argument("--vqvae-map", help="EXP06b: JSON mapping checkpoint keys to model keys")
    p.add_argument("--eval-n", type=int, default=5000)
    p.add_argument("--eval-batch-size", type=int, default=50)
    p.add_argument("--eval-split", default="all", help="CelebA partition the FID images come "
                   "from (the queue used the whole set)")
    p.add_argument("--feature-extractor", default="inception_v3")
    p.add_argument("--skip-train", action="store_true", help="only evaluate the newest weights")
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print what would run")
    return p


def _options(name: str, args) -> dict[str, Any]:
    options = dict(EXPERIMENTS[name][1])
    if name == "EXP06b":
        if not args.vqvae_ckpt:
            raise SystemExit("EXP06b needs --vqvae-ckpt")
        options["init_vqvae_ckpt"] = str(Path(args.vqvae_ckpt).resolve())
        if args.vqvae_map:
            options["init_vqvae_map"] = str(Path(args.vqvae_map).resolve())
    return options


def _dataset_kwargs(args, resolution: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"resolution": resolution}
    if args.dataset == "celeba":
        if not args.data_root:
            raise SystemExit("--data-root is required for celeba")
        kw.update(root=str(Path(args.data_root).expanduser()), attribute=args.attribute)
    return kw


def trainer_argv(name: str, args, exp_dir: Path, resolution: int) -> list[str]:
    argv = ["--model", args.model, "--dataset", args.dataset, "--output-dir", str(exp_dir),
            "--duration", args.duration, "--keep", str(args.keep),
            "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
    for key, value in _options(name, args).items():
        argv += ["--set", f"{key}={json.dumps(value) if isinstance(value, bool) else value}"]
    for key, value in _dataset_kwargs(args, resolution).items():
        argv += ["--set", f"data.{key}={value}"]
    if (exp_dir / "checkpoints" / "latest").is_file():
        argv += ["--resume", "latest"]
    return argv + list(args.trainer_args)


def eval_command(args, exp_dir: Path, eval_kwargs: dict[str, Any]) -> list[str]:
    """The ``ganzoo eval`` command equivalent to the evaluation of a completed run."""
    cmd = ["ganzoo", "eval", str(exp_dir / "final"), "--ref", args.dataset, "--metric", "fid",
           "--n", str(eval_kwargs["n"]), "--batch-size", str(eval_kwargs["batch_size"]),
           "--feature-extractor", eval_kwargs["feature_extractor"],
           "--seed", str(eval_kwargs["seed"])]
    for key, value in eval_kwargs["dataset_kwargs"].items():
        cmd += ["-d", f"{key}={value}"]
    return cmd + ["--out", eval_kwargs["out"]]


def load_trained(exp_dir: Path):
    """The newest weights of a run: ``final/`` after a completed run, else the newest
    checkpoint (after a signal stop)."""
    import ganzoo
    from ganzoo.hub import load_weights

    # The VQ-VAE init only matters at the start of training; the weights replace it.
    no_init = {"init_vqvae_ckpt": None, "init_vqvae_map": None}
    final = exp_dir / "final"
    if (final / "model.safetensors").is_file():
        step = json.loads((final / "config.json").read_text()).get("card", {}).get("steps")
        return ganzoo.from_pretrained(final, **no_init), step
    from ganzoo.training.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint("latest", exp_dir)
    if ckpt is None:
        raise SystemExit(f"{exp_dir} holds no trained weights (no final/ and no checkpoint)")
    run = json.loads((ckpt / "config.json").read_text())
    model = ganzoo.build(run["model"], **{**run.get("model_args", {}), **no_init})
    load_weights(model, ckpt / "model.safetensors")
    step = json.loads((ckpt / "trainer_state.json").read_text()).get("step")
    return model, step


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:len(argv) - len(extra) - (1 if extra or "--" in argv
                                                                    else 0)])
    args.trainer_args = extra  # after --: passed to ganzoo.train as they are
    if args.list or not args.experiment:
        for name, (slug, options, what) in EXPERIMENTS.items():
            print(f"{name:7s} {what}\n        options: {json.dumps(options)}")
        return 0
    import ganzoo

    name = args.experiment
    resolution = args.resolution or max(ganzoo.model_info(args.model)["config"]["resolutions"])
    slug = EXPERIMENTS[name][0]
    exp_dir = Path(args.output_root) / f"{name}_{args.attribute.lower()}_{slug}"
    targv = trainer_argv(name, args, exp_dir, resolution)
    fid_path = exp_dir / f"fid_{resolution}_n{args.eval_n}.json"
    eval_kwargs = dict(metrics=["fid"], n=args.eval_n, batch_size=args.eval_batch_size,
                       dataset_kwargs={**_dataset_kwargs(args, resolution),
                                       **({"split": args.eval_split}
                                          if args.dataset == "celeba" else {})},
                       feature_extractor=args.feature_extractor, seed=args.seed,
                       out=str(fid_path))
    if args.dry_run:
        print("python -m ganzoo.train " + " ".join(targv))
        print(" ".join(eval_command(args, exp_dir, eval_kwargs)))
        return 0
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "experiment.json").write_text(json.dumps(
        {"experiment": name, "description": EXPERIMENTS[name][2], "model": args.model,
         "options": _options(name, args), "trainer_argv": targv,
         "evaluate": {"reference": args.dataset, **eval_kwargs}}, indent=2) + "\n")
    if not args.skip_train:
        from ganzoo.train import main as train_main

        code = train_main(targv)
        if code != 0:
            print(f"{name}: training failed (exit {code}); not evaluating", file=sys.stderr)
            return code
    if args.skip_eval:
        return 0
    model, step = load_trained(exp_dir)
    result = ganzoo.evaluate(model, args.dataset, step=step, **eval_kwargs)
    metrics = result["metrics"]
    print(f"{name}: " + ", ".join(f"{k} = {v:.2f}" for k, v in sorted(metrics.items())
                                  if isinstance(v, float)) + f" -> {fid_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
