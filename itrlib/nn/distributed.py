"""What a model needs to train under torch.distributed (DDP, one process per rank) as it does in one process.

Each rank encodes its own slice of the global batch; the loss is computed on every rank over the whole batch
(:func:`gather_batch`), so each rank computes the same loss from the same numbers. The gather's backward sums
the gradient over ranks, so every rank's gradients are ``world_size`` times its share of the full-batch
gradient and DDP's average over ranks gives exactly the gradient of one process on the global batch.
BatchNorm takes its statistics over the global batch (:class:`GlobalBatchNorm1d`, also on CPU, where
``nn.SyncBatchNorm`` does not run), and a random draw made after the gather (AFA's mixing weights) comes
from rank 0 (:func:`same_on_every_rank`). A pairwise model may instead score the gathered items of one
side against its own items of the other and gather the score matrix's columns (:func:`gather_columns`), under the
same gradient rule. With one process every function here is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _Gather(torch.autograd.Function):
    """All-gather along ``dim`` (equal shapes on every rank); backward: the gradient summed over ranks, sliced."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim, ctx.size = dim, x.shape[dim]
        return _all_gathered(x, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.narrow(ctx.dim, dist.get_rank() * ctx.size, ctx.size), None


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """(B_local, ...) on each rank -> (world_size * B_local, ...) in rank order; differentiable (see module).

    Every rank must pass the same shape (the sampler gives each rank batch_size / world_size items)."""
    return _Gather.apply(x, 0) if world_size() > 1 else x


def gather_columns(x: torch.Tensor) -> torch.Tensor:
    """(R, C_local) on each rank -> (R, world_size * C_local), the ranks' columns side by side in rank order;
    differentiable as :func:`gather_batch`. A pairwise model scores all R items against its own C_local and
    every rank then holds the whole score matrix."""
    return _Gather.apply(x, 1) if world_size() > 1 else x


@torch.no_grad()
def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """:func:`gather_batch` without gradient (momentum keys, labels, lengths)."""
    return x if world_size() == 1 else _all_gathered(x)


def _all_gathered(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's ``x`` (equal shapes) concatenated along ``dim`` in rank order."""
    parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim)


def pad_to_common_width(features: torch.Tensor) -> torch.Tensor:
    """Padded sets (B_local, L_rank, D) -> (B_local, L_max, D), L_max the longest of any rank (zeros added)."""
    if world_size() == 1:
        return features
    width = torch.tensor([features.shape[1]], device=features.device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    return F.pad(features, (0, 0, 0, int(width) - features.shape[1]))


def gather_padded(features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded sets (B_local, L_rank, D) whose padding differs between ranks -> (B, L_max, D), (B,): each rank
    pads to the longest set of any rank before the gather (the padding is never read as data)."""
    if world_size() == 1:
        return features, lengths
    return gather_batch(pad_to_common_width(features)), gather_detached(lengths)


def same_on_every_rank(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``x`` on every rank: a random draw made after :func:`gather_batch`, which every rank's loss
    must share. A no-op in one process."""
    if world_size() > 1:
        x = x.contiguous()
        dist.broadcast(x, src=0)
    return x


class _GlobalSum(torch.autograd.Function):
    """Sum over ranks; backward: the gradient summed over ranks (every rank's loss is the same)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch (all ranks), on any device.

    Inputs (N, C) or (N, C, L) as ``nn.BatchNorm1d``; the state dict is the same. Mean and variance are
    taken in two passes (sum, then the sum of squared deviations), each summed over ranks; the running
    variance is the unbiased one, as ``nn.BatchNorm1d``. Outside training, or in one process, it is
    ``nn.BatchNorm1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        axes = [0] if x.dim() == 2 else [0, 2]
        shape = [1, -1] if x.dim() == 2 else [1, -1, 1]
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count)
        mean = _GlobalSum.apply(x.float().sum(axes)) / n
        centred = x.float() - mean.view(shape)
        var = _GlobalSum.apply(centred.square().sum(axes)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_((var * n / max(n - 1, 1)).to(self.running_var.dtype), m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def globalize_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm1d`` of ``module`` into a :class:`GlobalBatchNorm1d` in place (same
    parameters and buffers); returns ``module``."""
    for child in module.modules():
        if type(child) is nn.BatchNorm1d:
            child.__class__ = GlobalBatchNorm1d
    return module
