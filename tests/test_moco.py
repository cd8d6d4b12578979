"""MoCo: the queue (a ring buffer), the momentum encoder (an EMA without gradient) and the queue's InfoNCE."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.contrastive.moco import KeyQueue, enqueue, moco_loss, moco_loss_reference, momentum_update


def test_enqueue_replaces_the_oldest_block_and_wraps():
    queue = torch.arange(8.0)[:, None].repeat(1, 3)           # row r holds r
    ptr = 0
    for step in range(5):                                      # 5 blocks of 2 rows: around the ring once and more
        keys = torch.full((2, 3), 100.0 + step)
        queue, ptr = enqueue(queue, ptr, keys)
    # Blocks 0..3 filled rows 0-1, 2-3, 4-5, 6-7; block 4 overwrote rows 0-1 again.
    assert queue[:, 0].tolist() == [104, 104, 101, 101, 102, 102, 103, 103]
    assert ptr == 2


def test_enqueue_takes_a_device_pointer_without_reading_it():
    queue, ptr = torch.zeros(6, 2), torch.tensor(4)
    queue, ptr = enqueue(queue, ptr, torch.ones(2, 2))
    assert isinstance(ptr, torch.Tensor) and int(ptr) == 0 and queue[4:].eq(1).all() and queue[:4].eq(0).all()


@pytest.mark.parametrize("size, batch, dim, match", [(10, 4, 3, "multiple"), (8, 2, 5, r"keys must be \(B, 3\)")])
def test_enqueue_refuses_a_block_that_does_not_fit(size, batch, dim, match):
    with pytest.raises(ValueError, match=match):
        enqueue(torch.zeros(size, 3), 0, torch.zeros(batch, dim))


def test_key_queue_refuses_a_size_that_is_not_a_multiple_of_the_keys_per_step():
    with pytest.raises(ValueError, match="queue_size=1000 must be a positive multiple of the keys pushed per step "
                                         r"\(128.*For example 1024"):
        KeyQueue(1000, 16, keys_per_step=128)


def test_key_queue_push_normalises_and_cycles():
    queue = KeyQueue(4, 3, keys_per_step=2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(4))
    queue.push(torch.tensor([[3.0, 0, 0], [0, 0, 2.0]]))
    assert queue.keys[:2].tolist() == [[1, 0, 0], [0, 0, 1]] and int(queue.ptr) == 2
    queue.push(torch.ones(2, 3))
    queue.push(torch.zeros(2, 3) + torch.tensor([0, 5.0, 0]))
    assert int(queue.ptr) == 2 and queue.keys[0].tolist() == [0, 1, 0]
    assert set(queue.state_dict()) == {"keys", "ptr"}          # both are saved in a checkpoint


def _pair(seed=0):
    torch.manual_seed(seed)
    query = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    key = copy.deepcopy(query).requires_grad_(False)
    with torch.no_grad():
        for p in key.parameters():
            p.add_(torch.randn_like(p))
    return key, query


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.99])
def test_momentum_update_after_k_steps_matches_the_closed_form(momentum):
    """With the query fixed, k EMA steps give m^k key0 + (1 - m^k) query, computed directly."""
    key, query = _pair()
    start = [p.clone() for p in key.parameters()]
    buffers = [b.clone() for b in key.buffers()]
    k = 7
    for _ in range(k):
        momentum_update(key, query, momentum)
    for p, p0, q in zip(key.parameters(), start, query.parameters()):
        torch.testing.assert_close(p, momentum**k * p0 + (1 - momentum**k) * q.detach())
    assert all(torch.equal(b, b0) for b, b0 in zip(key.buffers(), buffers))   # buffers are not averaged


def test_momentum_update_builds_no_graph_and_the_key_gets_no_gradient():
    key, query = _pair()
    momentum_update(key, query, 0.9)
    assert all(p.grad_fn is None and not p.requires_grad for p in key.parameters())
    x = torch.randn(6, 4)
    loss = moco_loss(query(x), key(x), F.normalize(torch.randn(8, 2), dim=1))
    loss.backward()
    assert all(p.grad is None for p in key.parameters())
    assert all(p.grad is not None for p in query.parameters())


@pytest.mark.parametrize("momentum, error", [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                             (float("nan"), TypeError), (True, TypeError)])
def test_momentum_outside_zero_one_is_refused(momentum, error):
    key, query = _pair()
    with pytest.raises(error, match=r"momentum must be .*\[0, 1\)"):
        momentum_update(key, query, momentum)


def test_momentum_update_refuses_another_architecture():
    key, _ = _pair()
    with pytest.raises(ValueError, match="same architecture"):
        momentum_update(key, nn.Linear(4, 2), 0.9)


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_moco_loss_matches_the_per_query_reference_in_value_and_gradient(temperature):
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(5, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    negatives = torch.randn(12, 8, generator=gen, dtype=torch.float64)
    fast, ref = moco_loss(q, k, negatives, temperature), moco_loss_reference(q, k, negatives, temperature)
    torch.testing.assert_close(fast, ref)
    (grad_fast,) = torch.autograd.grad(fast, q)
    (grad_ref,) = torch.autograd.grad(ref, q)
    torch.testing.assert_close(grad_fast, grad_ref)
    assert torch.autograd.grad(moco_loss(q, k, negatives, temperature), k, allow_unused=True)[0] is None


def test_moco_loss_with_no_negative_like_the_key_is_near_zero():
    """A query identical to its key and orthogonal to every negative: the loss is log(1 + K e^(-1/t))."""
    q = torch.eye(4)[:2]
    negatives = torch.eye(4)[2:].repeat(3, 1)                   # K = 6, all orthogonal to both queries
    t = 0.1
    expected = torch.log1p(6 * torch.exp(torch.tensor(-1 / t)))
    torch.testing.assert_close(moco_loss(q, q.clone(), negatives, t), expected)


def test_moco_loss_bad_inputs():
    q = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        moco_loss(q, q, torch.randn(6, 8), 0.0)
    with pytest.raises(ValueError, match=r"negatives \(K, D\)"):
        moco_loss(q, q, torch.randn(6, 7))
    with pytest.raises(ValueError, match="NaN"):
        moco_loss(q, q, torch.full((6, 8), float("nan")))
