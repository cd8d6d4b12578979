"""Training across ranks (course_lib.distributed): 2 gloo processes on this CPU against one process, in float64."""

import copy
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib import distributed
from course_lib.checkpoint import load_checkpoint
from course_lib.contrastive.across_ranks import compare_gathers, nt_xent_across_ranks
from course_lib.contrastive.losses import nt_xent
from course_lib.contrastive.methods import Method
from course_lib.contrastive.models import ProjectionHead, SimCLRModel, build_encoder
from course_lib.contrastive.simclr import PRESETS, check_across_ranks
from course_lib.data import Episodes, sample_episodes
from course_lib.meta.core import MetaConfig, meta_step
from course_lib.meta.train import meta_train
from course_lib.meta.models import Conv4

ROOT = Path(__file__).resolve().parent.parent


def small_model() -> nn.Module:
    """A SimCLR model with BatchNorm in the encoder and the head, in float64, train mode."""
    torch.manual_seed(0)
    encoder = build_encoder("small_cnn", 8)
    return SimCLRModel(encoder, ProjectionHead(encoder.out_dim, 32, 16)).double().train()


@pytest.fixture(scope="module")
def gathers():
    gen = torch.Generator().manual_seed(1)
    v1, v2 = (torch.rand(8, 3, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    return compare_gathers(small_model(), v1, v2, temperature=0.2, world_size=2)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_two_ranks_with_the_gradient_carrying_gather_equal_one_process(gathers):
    loss, grad = gathers["one process"]
    ranks_loss, ranks_grad = gathers["gather with gradients"]
    assert ranks_loss == pytest.approx(loss, rel=1e-12)
    assert relative(ranks_grad, grad) < 1e-10


def test_the_gradientless_gather_keeps_the_loss_and_changes_the_gradient(gathers):
    """The classic bug: same loss, another gradient, no error."""
    loss, grad = gathers["one process"]
    bug_loss, bug_grad = gathers["gather without gradients"]
    assert bug_loss == pytest.approx(loss, rel=1e-12)
    assert relative(bug_grad, grad) > 1e-2


def test_on_one_process_the_loss_across_ranks_is_nt_xent():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(12, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    mine = nt_xent_across_ranks(*z.chunk(2), temperature=0.3)
    (g_mine,) = torch.autograd.grad(mine, z)
    reference = nt_xent(z, 0.3, impl="torch")
    (g_reference,) = torch.autograd.grad(reference, z)
    assert mine.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(g_mine, g_reference, rtol=0, atol=1e-12)
    assert distributed.gather(z) is z and distributed.world() == (0, 1) and distributed.is_main()


def test_cross_rank_batchnorm_is_batchnorm_on_one_process():
    torch.manual_seed(3)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(6), nn.BatchNorm1d(6))
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    plain = plain.double()
    plain(x)                                                  # materialise the lazy layer
    synced = distributed.sync_batchnorm(copy.deepcopy(plain))
    assert sum(isinstance(m, distributed.CrossRankBatchNorm) for m in synced.modules()) == 2
    out_plain, out_synced = plain(x), synced(x)
    assert torch.allclose(out_plain, out_synced, atol=1e-12)
    g_plain = torch.autograd.grad(out_plain.square().sum(), list(plain.parameters()))
    g_synced = torch.autograd.grad(out_synced.square().sum(), list(synced.parameters()))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g_plain, g_synced))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), synced.state_dict().values()))


def test_what_cannot_train_across_ranks_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="SimCLR's objective"):
        check_across_ranks(replace(PRESETS["smoke"], method=Method("moco", queue_size=512)), 2)
    with pytest.raises(ValueError, match="multiple of 3"):
        check_across_ranks(PRESETS["smoke"], 3)
    with pytest.raises(ValueError, match="same B images"):
        nt_xent_across_ranks(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="divisible by world_size"):
        compare_gathers(small_model(), torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16), world_size=2)


def maml_setup():
    """A float64 Conv-4 and 4 tasks of 3-way 1-shot on random 28x28 'drawings' (what is compared is arithmetic)."""
    torch.manual_seed(4)
    model = Conv4(3, 8, downsample="stride").double()
    images = torch.rand(12, 20, 1, 28, 28, dtype=torch.float64)
    tasks = sample_episodes(images, 3, 1, 2, 4, generator=torch.Generator().manual_seed(5))
    return model, tasks, MetaConfig(method="maml", inner_lr=0.4, inner_steps=1, meta_batch=4)


def maml_rank(rank: int, size: int, init: str, out: str) -> None:
    """One rank of the MAML comparison: its half of the tasks, one outer step, rank 0 saves the weights."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        model, tasks, cfg = maml_setup()
        half = len(tasks.x_support) // size
        mine = Episodes(*(t[rank * half:(rank + 1) * half] for t in tasks))
        meta_step(model, torch.optim.SGD(model.parameters(), lr=1.0), mine, cfg)
        if rank == 0:
            torch.save(model.state_dict(), out)
        drawn = []   # then meta_train: its own tasks on each rank, the same weights on every rank after each step

        def sample(meta_batch, generator):
            drawn.append(sample_episodes(torch.rand(12, 20, 1, 28, 28, dtype=torch.float64, generator=generator), 3, 1,
                                         2, meta_batch, generator=generator))
            return drawn[-1]

        meta_train(model, sample, replace(cfg, steps=2), generator=torch.Generator().manual_seed(6), progress=False)
        torch.save({"weights": model.state_dict(), "tasks": [t.x_support for t in drawn]}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_maml_on_two_ranks_takes_the_outer_step_of_one_process_on_all_tasks(tmp_path):
    """Tasks split across ranks, the meta-gradient averaged: the same step (BatchNorm statistics are per task)."""
    model, tasks, cfg = maml_setup()
    before = copy.deepcopy(model.state_dict())
    meta_step(model, torch.optim.SGD(model.parameters(), lr=1.0), tasks, cfg)
    torch.multiprocessing.spawn(maml_rank, args=(2, f"file://{tmp_path}/rendezvous", str(tmp_path / "rank0.pt")),
                                nprocs=2, join=True)
    ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            step = (value - before[name]).abs().max()
            assert torch.allclose(ranks[name], value, rtol=0, atol=1e-12 * max(1.0, step.item())), name
    assert any(not torch.equal(value, before[name]) for name, value in model.state_dict().items())
    trained = [torch.load(f"{tmp_path / 'rank0.pt'}.{rank}", weights_only=True) for rank in (0, 1)]
    assert all(torch.equal(trained[0]["weights"][k], trained[1]["weights"][k]) for k in trained[0]["weights"])
    assert len(trained[0]["tasks"]) == 2 and trained[0]["tasks"][0].shape[0] == 2          # 2 steps, 4 / 2 tasks each
    assert not torch.equal(trained[0]["tasks"][0], trained[1]["tasks"][0])                 # each rank its own tasks


def test_torchrun_trains_simclr_on_two_ranks_and_rank_zero_keeps_the_checkpoint(tmp_path):
    """The entry point end to end: 2 gloo ranks, a budgeted smoke run (so both must agree on the plan)."""
    env = dict(os.environ, COURSE_RUNS_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "course_lib.contrastive.train", "--preset", "smoke", "--epochs", "2", "--train-per-class", "26"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "2 rank(s) on cpu, batch 256 (128 per rank)" in done.stdout
    assert done.stdout.count("kNN top-1") == 1                # rank 0 reports, once
    state = load_checkpoint(tmp_path / "simclr-smoke-2ranks.pt", kind="simclr")
    assert state["config"]["ranks"] == "2" and state["history"]["total_steps"] == 2
    assert len(state["history"]["evals"]) == 1
