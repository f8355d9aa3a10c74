"""Small tensor helpers used across models."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l2norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """``x / (||x||_2 + eps)`` along ``dim`` (VSE∞'s normalisation, eps added to the norm)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def safe_l2norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """:func:`l2norm` whose gradient stays finite where ``x`` is all zeros (padding): the norm's
    backward at 0 is taken as 0, where ``sqrt(sum(x^2))`` gives 0 * inf = NaN. A norm along another axis than
    the last is taken on a copy with that axis last: torch's CPU norm along a strided axis is tens of times
    slower than the copy."""
    dim = dim % x.dim()
    if dim == x.dim() - 1:
        norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    else:
        norm = torch.linalg.vector_norm(x.movedim(dim, -1).contiguous(), dim=-1, keepdim=True).movedim(-1, dim)
    return x / (norm + eps)


def length_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask (B, L): True at valid positions ``t < lengths[b]``."""
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def inner_products_fp32(img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
    """Inner products (n_i, d) x (n_c, d) -> (n_i, n_c) in float32, also under autocast.

    Scores are never rounded to bf16/fp16: a rounded matrix creates ties, which cost recall.
    """
    with torch.autocast(device_type=img_emb.device.type, enabled=False):
        return img_emb.float() @ cap_emb.float().T


def flush_subnormals(x: torch.Tensor) -> torch.Tensor:
    """x with its subnormal entries (0 < |x| < finfo.tiny, about 1.2e-38 in fp32) set to 0; same shape.

    CPU matrix products slow down many-fold on subnormal inputs: a sharply peaked softmax times a
    vector leaves them in features that are mostly exact zeros (ReLU region features), and every layer
    after it then pays. Each flushed value is below 1.2e-38, so results move by less than that.
    """
    return x.masked_fill(x.abs() < torch.finfo(x.dtype).tiny, 0.0)


def check_dropout_probability(p: float) -> None:
    """ValueError unless 0 <= p < 1."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")


def uniform_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of any shape: each entry kept with probability ``1 - p`` (and scaled by ``1 / (1 - p)``),
    else 0; identity when not ``training`` or ``p == 0``.

    On CPU the distribution of ``torch.nn.functional.dropout`` drawn differently: the keep mask is ``U >= p``
    for float32 uniforms ``U``, which costs about a third of the Bernoulli sampler ``F.dropout`` uses there
    (0.1 s for a (128, 36, 2048) tensor on a 2-core machine). Same seed, same mask; not the masks of
    ``F.dropout``. Other devices use ``F.dropout`` itself (one fused kernel on CUDA).
    """
    check_dropout_probability(p)
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    keep = torch.rand(x.shape, dtype=torch.float32).ge_(p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * keep


class UniformDropout(torch.nn.Module):
    """``nn.Dropout`` drawn with :func:`uniform_dropout` (same distribution, cheaper on CPU); ``p`` as nn.Dropout."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_dropout_probability(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return uniform_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
