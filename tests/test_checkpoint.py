"""Checkpoints: atomic writes, safe loads, readable refusals of corrupt or foreign files, RNG round trips."""

import os
import random

import numpy as np
import pytest
import torch

from course_lib.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state


class NotATensor:
    pass


def test_round_trip_and_no_temporary_files_left(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "ck.pt", "simclr", model={"w": torch.arange(3.0)}, epoch=2)
    save_checkpoint(path, "simclr", model={"w": torch.arange(4.0)}, epoch=3)     # overwrite in place
    state = load_checkpoint(path, "simclr")
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.arange(4.0))
    assert os.listdir(path.parent) == ["ck.pt"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", "simclr", epoch=1)
    with pytest.raises(Exception):
        save_checkpoint(path, "simclr", epoch=2, bad=lambda: None)   # cannot be pickled: fails mid-save
    assert load_checkpoint(path, "simclr")["epoch"] == 1
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_corrupt_and_truncated_files_are_rejected_with_a_clear_message(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="not a readable course_lib checkpoint.*delete it"):
        load_checkpoint(garbage, "simclr")
    good = save_checkpoint(tmp_path / "good.pt", "simclr", weights=torch.randn(1000))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(truncated, "simclr")


def test_foreign_files_are_rejected(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)           # a state_dict from another program
    with pytest.raises(CheckpointError, match="not written by course_lib"):
        load_checkpoint(plain, "simclr")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "course_lib.checkpoint/1", "kind": "simclr", "obj": NotATensor()}, unsafe)
    with pytest.raises(CheckpointError, match="not a readable"):                     # weights_only refuses it
        load_checkpoint(unsafe, "simclr")
    maml = save_checkpoint(tmp_path / "maml.pt", "maml", step=1)
    with pytest.raises(CheckpointError, match="holds a 'maml' checkpoint"):
        load_checkpoint(maml, "simclr")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt", "simclr")


def test_rng_state_round_trip_through_a_file(tmp_path):
    gen = torch.Generator().manual_seed(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save_checkpoint(tmp_path / "rng.pt", "test", rng=rng_state(gen))
    first = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    other = torch.Generator().manual_seed(9)
    set_rng_state(load_checkpoint(path, "test")["rng"], other)
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=other).item())
    assert first == again
    with pytest.raises(CheckpointError, match="generator state"):
        set_rng_state(load_checkpoint(path, "test")["rng"])


def test_atomic_write_is_all_or_nothing_and_keeps_the_file_mode(tmp_path):
    from course_lib.checkpoint import atomic_write

    path = tmp_path / "notes.txt"
    path.write_text("old")
    path.chmod(0o640)
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, "w") as fh:
            fh.write("half of the new")
            raise KeyboardInterrupt  # Ctrl-C mid-write
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with atomic_write(path, "w") as fh:
        fh.write("new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o640
    with atomic_write(tmp_path / "sub" / "fresh.bin") as fh:  # a new file in a new folder: created, mode 0644
        fh.write(b"x")
    assert ((tmp_path / "sub" / "fresh.bin").stat().st_mode & 0o777) == 0o644


def _cuda_like(state: dict) -> dict:
    """`state` as a run on a GPU writes it: its generator's state is a CUDA one (16 bytes, not a CPU's 5,056)."""
    return {**state, "generators": [torch.zeros(16, dtype=torch.uint8)], "generator_devices": ["cuda"]}


@pytest.mark.parametrize("older", [False, True], ids=["device recorded", "older checkpoint, no device"])
def test_a_gpu_runs_random_state_is_refused_on_a_cpu_and_nothing_changes(older):
    gen = torch.Generator().manual_seed(5)
    state = _cuda_like(rng_state(gen))
    if older:
        del state["generator_devices"]
    torch.manual_seed(11)
    before, gen_before = torch.get_rng_state(), gen.get_state()
    with pytest.raises(CheckpointError, match="resumes exactly only on the device type it started on"):
        set_rng_state(state, gen)
    assert torch.equal(torch.get_rng_state(), before) and torch.equal(gen.get_state(), gen_before)


def test_a_run_written_on_a_gpu_and_resumed_on_a_cpu_says_so(tmp_path):
    """The Colab case: a checkpoint from a CUDA runtime, resumed after switching to a CPU runtime."""
    from dataclasses import replace

    from course_lib.contrastive.simclr import train_simclr
    from tests.test_simclr import TINY, data, fresh_model

    images, _ = data()
    cfg = replace(TINY, epochs=1)
    train_simclr(fresh_model(), images, cfg, checkpoint=tmp_path / "gpu.pt", progress=False)
    payload = load_checkpoint(tmp_path / "gpu.pt", "simclr")
    payload["rng"] = _cuda_like(payload["rng"])
    payload["history"]["total_steps"] = 10   # unfinished, so that it resumes
    torch.save(payload, tmp_path / "gpu.pt")
    with pytest.raises(CheckpointError, match="written by a run on cuda, and this run draws on cpu"):
        train_simclr(fresh_model(), images, cfg, checkpoint=tmp_path / "gpu.pt", progress=False)


def test_cuda_states_are_restored_on_the_gpus_that_are_visible(monkeypatch):
    """A checkpoint from 2 GPUs resumed where 1 is visible: the first state is restored, no error."""
    gen = torch.Generator().manual_seed(5)
    state = {**rng_state(gen), "cuda": [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]}
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, index: restored.append((index, s.tolist())))
    set_rng_state(state, gen)
    assert restored == [(0, [1])]


def test_a_compiled_model_checkpoints_the_module_itself_and_resumes_into_a_plain_one(tmp_path):
    """torch.compile wraps a model whose state_dict keys start with "_orig_mod."; the checkpoint must not."""
    from dataclasses import replace

    from course_lib.contrastive.simclr import train_simclr
    from tests.test_simclr import TINY, data, fresh_model

    images, _ = data()
    cfg = replace(TINY, epochs=1)
    compiled = torch.compile(fresh_model())     # compiles lazily: train_simclr runs its module
    first = train_simclr(compiled, images, cfg, checkpoint=tmp_path / "c.pt", progress=False)
    keys = load_checkpoint(tmp_path / "c.pt", "simclr")["model"].keys()
    assert not any("_orig_mod" in k for k in keys) and any(k.startswith("model.encoder.") for k in keys)
    plain = fresh_model()
    again = train_simclr(plain, images, cfg, checkpoint=tmp_path / "c.pt", progress=False)   # finished: loaded
    assert again.per_step == first.per_step
    for a, b in zip(compiled._orig_mod.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
