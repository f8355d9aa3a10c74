"""Momentum contrast pieces (MoCo-style, as used by USER, TIP 2024): key encoders, EMA updates, feature queues.

A key encoder is a frozen copy of a query encoder that follows it by an exponential moving average of the
parameters (:func:`momentum_update`); the keys it produces are pushed into a FIFO :class:`FeatureQueue` whose
contents serve as extra negatives. As in the official code, the loss is computed against the queue BEFORE
the current batch's keys are enqueued, and only parameters (not buffers such as BatchNorm running statistics)
follow the query encoder.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from itrlib.errors import ConfigError


class FeatureQueue(nn.Module):
    """FIFO ring of ``size`` (Q) feature vectors of dimension ``dim``.

    Buffers (saved in the state_dict, so a resumed run continues bit-exactly):
    ``features`` (Q, dim) float32, one vector per ROW (the official code stores the transpose, (dim, Q));
    ``pointer`` int64 scalar, the row the next key is written to.
    Initialised like the official code: uniform [0, 1) noise, each row L2-normalised (all entries >= 0), drawn
    from a private generator seeded by ``seed`` so construction leaves torch's global RNG untouched. Until the
    ring has been filled once, part of the negatives are this noise.
    """

    features: torch.Tensor
    pointer: torch.Tensor

    def __init__(self, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size ({size}) and dim ({dim}) must be positive")
        noise = torch.rand(size, dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("features", F.normalize(noise, dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        """Q, the number of stored vectors."""
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        """Dimension of one stored vector."""
        return self.features.shape[1]

    def snapshot(self) -> torch.Tensor:
        """(Q, dim) detached CLONE of the queue, the negatives for the current step (``logits = q @ snap.T``).

        A clone, not the buffer itself: autograd saves the negatives for the backward pass, and the
        :meth:`enqueue` that follows in the same step rewrites the buffer in place, which would invalidate
        the saved tensor (and silently change the negatives if autograd did not check versions).
        """
        return self.features.detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (B, dim), B <= Q, at rows pointer, pointer+1, ... (mod Q); advance pointer by B (mod Q).

        Keys are detached and cast to the buffer's dtype and device. Any Q and any B <= Q are handled (the
        write wraps around the end of the ring), so a last partial batch is fine.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (B, {self.dim}), got {tuple(keys.shape)}")
        batch = keys.shape[0]
        if batch > self.size:
            raise ValueError(f"batch of {batch} keys exceeds the queue size {self.size}")
        rows = (self.pointer + torch.arange(batch, device=self.features.device)) % self.size
        self.features[rows] = keys.detach().to(self.features)
        self.pointer.add_(batch).remainder_(self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"


def check_queue_size(queue_size: int, batch_size: int) -> None:
    """Require ``queue_size`` to be a positive multiple of ``batch_size`` (the official code asserts
    Q % batch_size == 0, so full batches always wrap the pointer exactly to 0)."""
    if batch_size <= 0 or queue_size <= 0 or queue_size % batch_size != 0:
        raise ConfigError(
            f"model.queue_size={queue_size} must be a positive multiple of train.batch_size={batch_size}"
        )


def make_key_encoder(query: nn.Module) -> nn.Module:
    """Deep copy of ``query`` (identical weights, buffers and train/eval mode, independent storage) with every
    parameter frozen (``requires_grad=False``): key encoders are only moved by :func:`momentum_update`."""
    key = copy.deepcopy(query)
    key.requires_grad_(False)
    return key


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, momentum: float) -> None:
    """In place, for every parameter pair: ``key = momentum * key + (1 - momentum) * query``.

    Parameters are paired by name and must match in names, order and shapes. Buffers (e.g. BatchNorm
    running statistics) are left as they are, as in the official code. ``momentum`` in [0, 1]:
    1 keeps the key, 0 copies the query.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
    key_named = list(key.named_parameters())
    query_named = list(query.named_parameters())
    key_sig = [(name, p.shape) for name, p in key_named]
    query_sig = [(name, p.shape) for name, p in query_named]
    if key_sig != query_sig:
        mismatch = next(
            ((k, q) for k, q in zip(key_sig, query_sig, strict=False) if k != q),
            (f"{len(key_sig)} parameters", f"{len(query_sig)} parameters"),
        )
        raise ValueError(f"key and query parameters do not match: key {mismatch[0]} vs query {mismatch[1]}")
    key_params = [p for _, p in key_named]
    query_params = [p for _, p in query_named]
    torch._foreach_mul_(key_params, momentum)
    torch._foreach_add_(key_params, query_params, alpha=1.0 - momentum)
