"""Momentum key encoders and feature queues (itrlib.nn.user_momentum), checked against slow reference code."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from itrlib.errors import ConfigError
from itrlib.nn.user_momentum import FeatureQueue, check_queue_size, make_key_encoder, momentum_update


def reference_ring(initial: torch.Tensor, batches: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Obviously-correct FIFO ring: one row at a time into a Python list."""
    rows = list(initial.clone())
    pointer = 0
    for batch in batches:
        for key in batch:
            rows[pointer] = key.float()
            pointer = (pointer + 1) % len(rows)
    return torch.stack(rows), pointer


@pytest.mark.parametrize(
    ("size", "batch_sizes"),
    [
        (8, [4, 4, 4, 4, 4]),  # Q divisible by B: pointer wraps exactly
        (8, [3, 3, 3, 3, 3, 2]),  # Q not divisible by B, wrap inside a batch, last partial batch
        (7, [7, 7, 5, 7]),  # B == Q
        (10, [4, 4, 4, 4, 4, 4, 1]),
        (5, [1] * 12),
    ],
)
def test_enqueue_matches_reference_ring(size: int, batch_sizes: list[int]) -> None:
    dim = 3
    queue = FeatureQueue(size, dim, seed=1)
    gen = torch.Generator().manual_seed(2)
    batches = []
    expected_pointer = 0
    for batch in batch_sizes:
        keys = torch.randn(batch, dim, generator=gen)
        batches.append(keys)
        expected_ring, expected_pointer = reference_ring(FeatureQueue(size, dim, seed=1).features, batches)
        queue.enqueue(keys)
        assert torch.equal(queue.features, expected_ring)
        assert queue.pointer.dtype == torch.long and queue.pointer.dim() == 0
        assert int(queue.pointer) == expected_pointer
    assert expected_pointer == sum(batch_sizes) % size


def test_enqueue_detaches_and_casts() -> None:
    queue = FeatureQueue(4, 2)
    keys = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    queue.enqueue(keys * 2)
    assert queue.features.dtype == torch.float32
    assert not queue.features.requires_grad and queue.features.grad_fn is None
    assert torch.equal(queue.features[:2], (keys * 2).detach().float())


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        (torch.zeros(5, 3), "5.*4|4.*5"),  # B > Q names both
        (torch.zeros(2, 4), r"\(B, 3\).*\(2, 4\)"),
        (torch.zeros(3), r"\(B, 3\).*\(3,\)"),
        (torch.zeros(1, 2, 3), r"\(1, 2, 3\)"),
    ],
)
def test_enqueue_rejects_bad_shapes(keys: torch.Tensor, match: str) -> None:
    queue = FeatureQueue(4, 3)
    before = queue.features.clone()
    with pytest.raises(ValueError, match=match):
        queue.enqueue(keys)
    assert torch.equal(queue.features, before) and int(queue.pointer) == 0


def test_init_unit_norm_nonnegative_seeded_and_leaves_global_rng() -> None:
    rng_before = torch.get_rng_state()
    queue = FeatureQueue(64, 16, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert queue.features.shape == (64, 16) and queue.features.dtype == torch.float32
    assert torch.allclose(queue.features.norm(dim=1), torch.ones(64), atol=1e-6)
    assert (queue.features >= 0).all()
    assert int(queue.pointer) == 0
    assert torch.equal(FeatureQueue(64, 16, seed=3).features, queue.features)
    assert not torch.equal(FeatureQueue(64, 16, seed=4).features, queue.features)


def test_state_dict_round_trip_and_resume() -> None:
    holder = nn.Module()
    holder.queue = FeatureQueue(10, 4, seed=5)
    gen = torch.Generator().manual_seed(6)
    for batch in (4, 4, 3):
        holder.queue.enqueue(torch.randn(batch, 4, generator=gen))
    state = holder.state_dict()
    assert set(state) == {"queue.features", "queue.pointer"}

    resumed = nn.Module()
    resumed.queue = FeatureQueue(10, 4, seed=99)
    resumed.load_state_dict(copy.deepcopy(state))
    assert torch.equal(resumed.queue.features, holder.queue.features)
    assert int(resumed.queue.pointer) == int(holder.queue.pointer) == 1

    for batch in (4, 4, 2, 4):
        keys = torch.randn(batch, 4, generator=gen)
        holder.queue.enqueue(keys)
        resumed.queue.enqueue(keys)
        assert torch.equal(resumed.queue.features, holder.queue.features)
        assert torch.equal(resumed.queue.pointer, holder.queue.pointer)


def test_snapshot_is_detached_clone_usable_across_enqueue() -> None:
    queue = FeatureQueue(6, 3, seed=7)
    query = torch.randn(2, 3, requires_grad=True)
    negatives = queue.snapshot()
    before = negatives.clone()
    loss = (query @ negatives.T).logsumexp(dim=1).sum()
    queue.enqueue(torch.randn(2, 3))  # official order: loss first, then enqueue, then backward
    loss.backward()
    assert torch.equal(negatives, before)
    assert not negatives.requires_grad
    assert query.grad is not None


@pytest.mark.parametrize(("queue_size", "batch_size"), [(2048, 128), (128, 128), (4096, 1)])
def test_check_queue_size_accepts_multiples(queue_size: int, batch_size: int) -> None:
    check_queue_size(queue_size, batch_size)


@pytest.mark.parametrize(("queue_size", "batch_size"), [(2000, 128), (0, 128), (64, 128), (-128, 128), (128, 0)])
def test_check_queue_size_rejects(queue_size: int, batch_size: int) -> None:
    with pytest.raises(ConfigError) as info:
        check_queue_size(queue_size, batch_size)
    message = str(info.value)
    assert f"model.queue_size={queue_size}" in message
    assert f"train.batch_size={batch_size}" in message


def small_encoder(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def test_make_key_encoder_frozen_identical_independent() -> None:
    query = small_encoder(0)
    key = make_key_encoder(query)
    assert query.state_dict().keys() == key.state_dict().keys()
    for name, tensor in query.state_dict().items():
        assert torch.equal(key.state_dict()[name], tensor), name
    assert all(not p.requires_grad for p in key.parameters())
    assert all(p.requires_grad for p in query.parameters())
    with torch.no_grad():
        query[0].weight.add_(1.0)
        query[1].running_mean.add_(1.0)
    assert not torch.equal(key[0].weight, query[0].weight)
    assert not torch.equal(key[1].running_mean, query[1].running_mean)


def reference_momentum(key: nn.Module, query: nn.Module, momentum: float) -> None:
    with torch.no_grad():
        for key_param, query_param in zip(key.parameters(), query.parameters(), strict=True):
            key_param.copy_(momentum * key_param + (1.0 - momentum) * query_param)


@pytest.mark.parametrize("momentum", [0.999, 0.995, 0.5, 0.1])
def test_momentum_update_matches_reference_and_keeps_buffers(momentum: float) -> None:
    key = make_key_encoder(small_encoder(0))
    query = small_encoder(1)
    query.train()
    query(torch.randn(8, 5))  # moves the query's BN running statistics away from the key's
    key_buffers = {name: b.clone() for name, b in key.named_buffers()}
    expected = copy.deepcopy(key)
    reference_momentum(expected, query, momentum)

    momentum_update(key, query, momentum)
    for (name, got), want in zip(key.named_parameters(), expected.parameters(), strict=True):
        assert (got - want).abs().max().item() <= 1e-7, name
        assert not got.requires_grad
    for name, buffer in key.named_buffers():
        assert torch.equal(buffer, key_buffers[name]), name
    assert not torch.equal(key[1].running_mean, query[1].running_mean)


def test_momentum_update_extremes() -> None:
    query = small_encoder(1)
    key = make_key_encoder(small_encoder(0))
    before = {name: p.clone() for name, p in key.named_parameters()}
    momentum_update(key, query, 1.0)
    for name, param in key.named_parameters():
        assert torch.equal(param, before[name]), name
    momentum_update(key, query, 0.0)
    for (name, param), query_param in zip(key.named_parameters(), query.parameters(), strict=True):
        assert torch.equal(param, query_param), name


def test_momentum_update_rejects_mismatch_and_bad_momentum() -> None:
    key = nn.Sequential(nn.Linear(4, 4))
    renamed = nn.Sequential(OrderedDict(fc=nn.Linear(4, 4)))
    with pytest.raises(ValueError, match="do not match"):
        momentum_update(key, renamed, 0.9)
    with pytest.raises(ValueError, match="do not match"):
        momentum_update(key, nn.Sequential(nn.Linear(4, 3)), 0.9)
    with pytest.raises(ValueError, match="do not match"):
        momentum_update(key, nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), 0.9)
    for momentum in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="momentum"):
            momentum_update(key, copy.deepcopy(key), momentum)
