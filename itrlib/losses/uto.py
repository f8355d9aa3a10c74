"""USER's unified-training-objective (UTO) loss (TIP 2024, eq. 17-21).

Queries: images V (B, E) and captions W (B, E), L2-normalised, S = V W^T (B, B) with positives S_ii.
Momentum keys Vk, Wk (B, E) and queues Qv, Qw (Q, E) of image / caption keys from earlier batches.
With the soft hinge ``h(x) = (1/gamma) log(1 + sum_j exp(gamma (x_j - margin)))``:

* ``L_mini = mean_i [ h(S[:, i] without i) + h(S[i, :] without i) - log(1 + S_ii) ]``
  (column i: images against caption i; row i: captions against image i)
* ``L_DVQ = mean_i [ h(Qv w_i) - log(1 + Vk_i . w_i) ]`` (caption query, image queue, positive = image key)
* ``L_DTQ = mean_i [ h(Qw v_i) - log(1 + v_i . Wk_i) ]`` (image query, caption queue, positive = caption key)
* ``L = mini_batch_weight * L_mini + L_DVQ + L_DTQ``

The queue terms use the queue as their ONLY negatives (no in-batch negatives), as in paper and official code.
Keys and queues are detached here (the official code computes them under no_grad), so no gradient reaches them.

Options, default = official code (it produced the paper's numbers):

* ``diagonal="zeroed"`` (official): S_ii is set to 0 inside the sums, which therefore keep a term
  ``exp(-gamma * margin)`` (e^-45 at the defaults, negligible); ``"excluded"`` (paper, m != i) drops it.
* ``positive="relu"`` (official): ``log(1 + relu(s))`` for the in-batch and the key positives; ``"raw"``
  (paper): ``log(1 + s)``, which is -inf at s = -1.

Numerics: float32 throughout, also under autocast; ``h`` is a logsumexp over ``[0, x_1, ..., x_n]`` so that
``gamma = 90`` never overflows.
"""

from __future__ import annotations

import torch

from itrlib.nn.functional import inner_products_fp32

DIAGONALS = ("zeroed", "excluded")
POSITIVES = ("relu", "raw")


def soft_hinge(scores: torch.Tensor, gamma: float, margin: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N, M) scores -> (N,) ``(1/gamma) log(1 + sum_j exp(gamma (s_j - margin)))``, masked entries left out."""
    logits = gamma * (scores - margin)
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    padded = torch.cat([logits.new_zeros(logits.shape[0], 1), logits], dim=1)
    return torch.logsumexp(padded, dim=1) / gamma


def _positive_log(pos: torch.Tensor, positive: str) -> torch.Tensor:
    """(N,) positive scores -> (N,) ``log(1 + relu(s))`` or ``log(1 + s)``."""
    return torch.log1p(pos.clamp(min=0) if positive == "relu" else pos)


def _check_pair(name: str, x: torch.Tensor | None, shape: tuple[int, ...] | None, dim: int, term: str) -> None:
    """Raise ValueError unless x is 2-D with feature size ``dim`` (and exactly ``shape`` when given)."""
    if x is None:
        raise ValueError(f"{name} is required for the {term} term")
    if x.dim() != 2 or x.shape[1] != dim or (shape is not None and tuple(x.shape) != shape):
        want = shape if shape is not None else ("Q", dim)
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def uto_loss(images: torch.Tensor, captions: torch.Tensor, *, key_images: torch.Tensor | None = None,
             key_captions: torch.Tensor | None = None, image_queue: torch.Tensor | None = None,
             caption_queue: torch.Tensor | None = None, gamma: float = 90.0, margin: float = 0.5,
             mini_batch_weight: float = 20.0, diagonal: str = "zeroed", positive: str = "relu",
             dvq: bool = True, dtq: bool = True) -> dict[str, torch.Tensor]:
    """UTO loss parts as float32 scalars: ``mini`` (L_mini, unweighted: the official code's ``UTO.forward``),
    ``mini_batch`` (``mini_batch_weight * mini``, the term a model trains on), ``dvq``, ``dtq`` and
    ``loss = mini_batch + dvq + dtq``. lambda is applied here only.

    images, captions, key_images, key_captions: (B, E); image_queue, caption_queue: (Q, E).
    ``dvq`` needs key_images and image_queue, ``dtq`` key_captions and caption_queue; a term switched off
    (Table IV rows II-V) is 0 and its tensors may be None. ``mini_batch_weight`` is lambda: 20 for F30K,
    1 for COCO.
    """
    if diagonal not in DIAGONALS:
        raise ValueError(f"diagonal must be one of {DIAGONALS}, got {diagonal!r}")
    if positive not in POSITIVES:
        raise ValueError(f"positive must be one of {POSITIVES}, got {positive!r}")
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if images.dim() != 2 or images.shape != captions.shape:
        raise ValueError(f"images and captions must both be (B, E), got {tuple(images.shape)} and "
                         f"{tuple(captions.shape)}")
    batch, dim = images.shape
    if dvq:
        _check_pair("key_images", key_images, (batch, dim), dim, "DVQ")
        _check_pair("image_queue", image_queue, None, dim, "DVQ")
    if dtq:
        _check_pair("key_captions", key_captions, (batch, dim), dim, "DTQ")
        _check_pair("caption_queue", caption_queue, None, dim, "DTQ")

    with torch.autocast(device_type=images.device.type, enabled=False):
        v, w = images.float(), captions.float()
        scores = inner_products_fp32(v, w)
        eye = torch.eye(batch, dtype=torch.bool, device=scores.device)
        if diagonal == "zeroed":
            off_diag, mask = scores.masked_fill(eye, 0.0), None
        else:
            off_diag, mask = scores, eye
        image_retrieval = soft_hinge(off_diag.T, gamma, margin, mask)  # row i of S^T = column i of S
        caption_retrieval = soft_hinge(off_diag, gamma, margin, mask)
        mini = (image_retrieval + caption_retrieval - _positive_log(scores.diagonal(), positive)).mean()

        parts = {"mini": mini, "dvq": mini.new_zeros(()), "dtq": mini.new_zeros(())}
        if dvq:
            vk, qv = key_images.detach().float(), image_queue.detach().float()
            parts["dvq"] = (soft_hinge(inner_products_fp32(w, qv), gamma, margin)
                            - _positive_log((vk * w).sum(dim=1), positive)).mean()
        if dtq:
            wk, qw = key_captions.detach().float(), caption_queue.detach().float()
            parts["dtq"] = (soft_hinge(inner_products_fp32(v, qw), gamma, margin)
                            - _positive_log((v * wk).sum(dim=1), positive)).mean()
        parts["mini_batch"] = mini_batch_weight * mini
        parts["loss"] = parts["mini_batch"] + parts["dvq"] + parts["dtq"]
    return parts
