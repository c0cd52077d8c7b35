"""EMA warm-up powers side by side in one training run, scored at several budgets: the study
behind each family's ``default_ema_warmup_power`` and ``default_ema_start`` (docs/training.md,
"EMA").

    python benchmarks/study_ema_powers.py --family ddpm --seed 0 --budgets 1000 2000 --n 500
    python benchmarks/study_ema_powers.py --family dcgan --budgets 500 1000 1500 --n 1000
    python benchmarks/study_ema_powers.py --family blobgan --budgets 1000 3000 --n 1000

One model of ``benchmarks/bench_quality.py``'s case for the family trains through the model API
(each group of ``model.schedule(step)`` with only its parameters trainable, its optimizer and
clipping, ``after_step``), on that case's data in shuffled epochs. Beside the live networks it
keeps one EMA copy per power, updated after every iteration with
``ema_decay_at(step, model.default_ema_decay, power=p)`` from step 0 (``update_ema``'s
averaging: parameters and BatchNorm statistics). At each budget the live networks and every
copy are scored with the case's ``fd@efficientnet_lite0`` on the same latents.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402  (also puts src/ on the path)
import ganzoo  # noqa: E402
from ganzoo.datasets import dataset_kwargs_for  # noqa: E402
from ganzoo.training.schedules import ema_decay_at  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # every case that trains on batches of single images (CUT's hold two domains)
    p.add_argument("--family", choices=[k for k in bq.CASES if k != "cut"], default="ddpm")
    p.add_argument("--powers", nargs="+", type=float, default=[1 / 2, 2 / 3, 3 / 4])
    p.add_argument("--budgets", nargs="+", type=int, default=[1000, 2000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=500, help="generated images scored")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    case = bq.CASES[args.family]
    torch.manual_seed(args.seed)
    model = ganzoo.build(case.preset, **case.model_args)
    if not model.ema_networks:
        p.error(f"{case.preset} keeps no EMA")
    geometry = dataset_kwargs_for(model)
    data = bq.epochs(bq.real_pool(case, geometry), case.batch_size, args.seed)
    specs = model.optimizer_groups()
    params = {g: model.group_parameters(g) for g in specs}
    opts = {g: spec.build(params[g]) for g, spec in specs.items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    copies = {power: copy.deepcopy(model) for power in args.powers}  # their .ema are the EMAs
    for other in copies.values():  # whose live networks are this run's
        for name in model.ema_networks:
            setattr(other, name, getattr(model, name))
    model.train()
    t0 = time.perf_counter()
    for step in range(max(args.budgets)):
        for group in model.schedule(step):
            ids = {id(q) for q in params[group]}
            for q in trainable:
                q.requires_grad_(id(q) in ids)
            loss, _ = model(group, {"image": next(data)}, step)
            opts[group].zero_grad(set_to_none=True)
            loss.backward()
            if specs[group].clip_grad_norm:
                nn.utils.clip_grad_norm_(params[group], specs[group].clip_grad_norm)
            opts[group].step()
            model.after_step(group, step)
        for q in trainable:
            q.requires_grad_(True)
        for power, other in copies.items():
            other.update_ema(ema_decay_at(step, model.default_ema_decay, power=power))
        if step + 1 in args.budgets:
            model.use_ema = False
            scores = {"live": bq.score(model.eval(), case, args.n, args.seed, geometry)}
            for power, other in copies.items():
                scores[f"power {power:.3g}"] = bq.score(other.eval(), case, args.n, args.seed,
                                                         geometry)
            model.train()
            print(f"{case.preset} seed {args.seed}, step {step + 1} "
                  f"({time.perf_counter() - t0:.0f} s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
