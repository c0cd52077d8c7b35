"""A real two-process (Gloo) evaluation matches the single-process one within 1e-4."""

from __future__ import annotations

import json
import os

import pytest
import torch

import ganzoo

from test_metrics import _FakeUncond  # the same fake unconditional model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
N = 21  # 6 batches of 4 (the last one short), shared unevenly by the two ranks


def _run(out_path=None):
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(N + 4, 3, 16, 16, generator=g) * 2 - 1
    return ganzoo.evaluate(
        _FakeUncond.from_config(gain=0.8), reference,
        metrics=["fid", "kid", "prc", "psnr", "lpips_diversity"],
        n=N, n_real=N + 4, batch_size=4, feature_extractor="test_random_cnn", cache=False,
        metric_kwargs={"kid": {"subset_size": 10},
                       "lpips_diversity": {"pretrained": False, "max_samples": 9}},
        out=out_path)


def _worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        result = _run(os.path.join(out_dir, "result.json"))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_single_process(tmp_path):
    import torch.multiprocessing as mp

    torch.set_num_threads(1)
    single = _run()
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       start_method="spawn", join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    written = json.loads((tmp_path / "result.json").read_text())  # rank 0 writes `out`
    assert written["protocol"]["world_size"] == 2
    assert set(single["metrics"]) == set(ranks[0]["metrics"])
    for res in ranks:
        assert res["protocol"]["world_size"] == 2
        assert res["protocol"]["n_fake"] == N
        for k, v in single["metrics"].items():
            assert res["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
