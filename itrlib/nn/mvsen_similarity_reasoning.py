"""MVSEN's pairwise matching network (eq. 5-11), batched over blocks of images x captions.

For one image (regions V, K x d) and one caption (words T, n x d), with A = LeakyReLU_0.1(V T^T) (K x n):

- words attended at each region r (eq. 5-6, "v_t2i"): a_r = softmax_w(scale * A[r, w] / ||A[:, w]||), then
  x_r = sum_w a_r[w] t_w (the norm runs over the regions for each word: the released code's SCAN-style
  L2 normalisation, not in the paper);
- regions attended at each word w ("t_i2t"): a_w = softmax_r(scale * A[r, w] / ||A[r, :]||), x_w = sum_r a_w[r] v_r;
- nodes: the K regions (code direction ``i2t``) with delta_r = (x_r - v_r)^2, or the n words (code ``t2i``)
  with delta_w = (x_w - t_w)^2;
- eq. 7: m = L2norm(W_c delta + b_c) (weight-normed W_c: d -> d_c);
- eq. 8-10, ``gcn_layers`` residual layers M <- softmax_rows((M W_q + b_q)(M W_k + b_k)^T) M + M (the
  release's reading: softmax-normalised edges, no node transform);
- eq. 11: S = mean over nodes of W_2 tanh(W_1 m + b_1) + b_2 (weight-normed, hidden ``hidden`` units).

Behaviour matched: FlyCuteBird/MVSEN ``sim_Reason.py`` (``weighted_Features``, ``GraphReasoning``,
``Reason_i2t``/``Reason_t2i``), which runs one caption at a time, sliced to its length, against a block of
images. Here a whole block of images x captions goes through each step at once: padded words and regions
are masked out of every norm, softmax and mean, so each pair's score equals the one-pair computation.

Edge logits use Q K^T = M (W_q W_k^T) M^T + 1 (W_k b_q)^T M^T + (terms constant along each row), and the
row-constant terms cancel in the softmax: one d_c x d_c product per layer instead of two (exact in
arithmetic; equal to the two-projection form to float rounding, see tests/test_mvsen.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from itrlib.nn.functional import safe_l2norm
from itrlib.nn.padded import PaddedSet

NODES = ("regions", "words")


@dataclass(frozen=True)
class PairFeatures:
    """Per-pair means of the attended features (the multi-label task's inputs), each (n_img, n_cap, d):
    ``words_at_regions`` averaged over the regions, ``regions_at_words`` averaged over the caption's words."""

    words_at_regions: torch.Tensor
    regions_at_words: torch.Tensor


class GraphReasoningLayer(nn.Module):
    """One residual GCN layer over the similarity nodes: M <- softmax(Q K^T) M + M."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        bound = (6.0 / (2 * dim)) ** 0.5  # the release's uniform Xavier, zero biases
        for layer in (self.query, self.key):
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)

    def forward(self, nodes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """nodes (P, n, d_c), valid (P, n) bool -> (P, n, d_c)."""
        # logits[i, j] = (m_i W_q^T + b_q) . (m_j W_k^T + b_k) up to terms constant in j
        bilinear = self.query.weight.T @ self.key.weight  # (d_c, d_c): W_q^T W_k acting on rows m_i
        shift = self.key.weight.T @ self.query.bias  # (d_c,): b_q . (W_k m_j)
        flat = nodes.reshape(-1, nodes.shape[-1])
        # the shift term varies along j only: a (P, 1, n) row added by the product, not a (P, n, d_c) addition
        column = (flat @ shift).view(nodes.shape[:2])
        logits = torch.baddbmm(column[:, None, :], (flat @ bilinear).view_as(nodes), nodes.transpose(1, 2))
        logits = logits.masked_fill_(~valid[:, None, :], float("-inf"))
        return torch.baddbmm(nodes, torch.softmax(logits, dim=-1), nodes)  # the residual added by the product


class SimilarityGraph(nn.Module):
    """Eq. 7-11: per-node difference vectors (P, n, d) -> one score per pair (P,)."""

    def __init__(self, dim: int, sim_dim: int = 256, hidden: int = 32, layers: int = 3):
        super().__init__()
        self.project = weight_norm(nn.Linear(dim, sim_dim))
        self.layers = nn.ModuleList(GraphReasoningLayer(sim_dim) for _ in range(layers))
        self.hidden = weight_norm(nn.Linear(sim_dim, hidden))
        self.score = weight_norm(nn.Linear(hidden, 1))

    def forward(self, delta: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """delta (P, n, d), valid (P, n) bool -> scores (P,)."""
        nodes = safe_l2norm(self.project(delta), dim=-1)
        for layer in self.layers:
            nodes = layer(nodes, valid)
        # mean_n(W_2 h_n + b_2) = W_2 mean_n(h_n) + b_2: the last layer runs once per pair
        hidden = torch.tanh(self.hidden(nodes)) * valid[..., None]
        mean = hidden.sum(1) / valid.sum(1, keepdim=True)
        return self.score(mean).squeeze(-1)


def attention_weights(regions: PaddedSet, words: PaddedSet, scale: float = 10.0, slope: float = 0.1,
                      want: tuple[str, ...] = NODES) -> dict[str, torch.Tensor]:
    """Cross-attention weights of every caption x image pair of two blocks, caption-major, each (C, I, K, n).

    regions (I images, K, d), words (C captions, n, d) -> ``{"regions": softmax over the words w of each
    region r (row r attends the caption at region r), "words": softmax over the regions r of each word w}``
    (only the keys in ``want``). Padded words and regions get weight 0 where they are attended; the rows of
    padded attenders are finite and never used.
    """
    v, t = regions.features, words.features
    n_img, k, d = v.shape
    n_cap, n, _ = t.shape
    region_ok, word_ok = regions.mask(), words.mask()
    # dots[c, w, i, r] = t_cw . v_ir: one (C*n, d) x (d, I*K) product
    dots = (t.reshape(-1, d) @ v.reshape(-1, d).T).view(n_cap, n, n_img, k)
    out = {}
    if "regions" in want:  # normalise over regions for each word, softmax over the words of each region
        valid = word_ok[:, None, None, :] & region_ok[None, :, :, None]  # (C, I, K, n)
        a = F.leaky_relu(dots.permute(0, 2, 3, 1).contiguous(), slope) * valid
        logits = (scale * safe_l2norm(a, dim=2)).masked_fill_(~word_ok[:, None, None, :], float("-inf"))
        out["regions"] = torch.softmax(logits, dim=-1)
    if "words" in want:  # normalise over words for each region, softmax over the regions of each word
        # laid out (I, C, n, K), as :func:`attend` multiplies it, and returned as a (C, I, K, n) view
        valid = region_ok[:, None, None, :] & word_ok[None, :, :, None]  # (I, C, n, K)
        a = F.leaky_relu(dots.permute(2, 0, 1, 3).contiguous(), slope) * valid
        logits = (scale * safe_l2norm(a, dim=2)).masked_fill_(~region_ok[:, None, None, :], float("-inf"))
        out["words"] = torch.softmax(logits, dim=-1).permute(1, 0, 3, 2)
    return out


def attend(weights: dict[str, torch.Tensor], regions: PaddedSet, words: PaddedSet, view: str) -> torch.Tensor:
    """Attended features of one view from :func:`attention_weights`: ``regions`` -> (C, I, K, d) the caption's
    words attended at each region (caption-major); ``words`` -> (I, C, n, d) the image's regions attended at each
    word (image-major: one (C*n, K) x (K, d) product per image, the regions never copied per caption)."""
    if view == "regions":
        n_cap, n_img, k, n = weights["regions"].shape
        # per caption c: (I*K, n) @ (n, d)
        return (weights["regions"].reshape(n_cap, n_img * k, n) @ words.features).view(n_cap, n_img, k, -1)
    n_cap, n_img, k, n = weights["words"].shape
    # per image i: (C*n, K) @ (K, d)
    per_image = weights["words"].permute(1, 0, 3, 2).reshape(n_img, n_cap * n, k)
    return torch.bmm(per_image, regions.features).view(n_img, n_cap, n, -1)


def pair_features(weights: dict[str, torch.Tensor], regions: PaddedSet, words: PaddedSet) -> PairFeatures:
    """Per-pair means of both attended views (:class:`PairFeatures`) from the weights of both views.

    The mean over the K_i regions of the words attended there is the caption's words weighted by the mean
    attention, ``(1/K_i) sum_r sum_w a_r[w] t_w = sum_w ((1/K_i) sum_r a_r[w]) t_w`` (likewise per word): the
    (C, I, K, d) and (C, I, n, d) attended tensors are never built. Equal to the mean of :func:`attend`'s
    output up to float rounding (tests/test_mvsen.py)."""
    region_ok, word_ok = regions.mask(), words.mask()
    # (C, I, n): the attention each word receives, averaged over the image's valid regions
    at_regions_w = (weights["regions"] * region_ok[None, :, :, None]).sum(2) / regions.lengths[None, :, None]
    # (C, I, K): the attention each region receives, averaged over the caption's valid words
    at_words_w = (weights["words"] * word_ok[:, None, None, :]).sum(3) / words.lengths[:, None, None]
    at_regions = at_regions_w @ words.features  # per caption c: (I, n) @ (n, d)
    at_words = torch.einsum("cik,ikd->icd", at_words_w, regions.features)
    return PairFeatures(at_regions.transpose(0, 1), at_words)


def pairwise_scores(graph: SimilarityGraph, regions: PaddedSet, words: PaddedSet, nodes: str,
                    scale: float = 10.0, slope: float = 0.1, features: bool = False
                    ) -> tuple[torch.Tensor, PairFeatures | None]:
    """Scores (I, C) of every image x caption pair through the matching network with ``nodes`` graph nodes
    (``regions``: code direction i2t; ``words``: code t2i); with ``features``, also the per-pair means of
    both attended views (:class:`PairFeatures`)."""
    if nodes not in NODES:
        raise ValueError(f"nodes must be one of {NODES}, got {nodes!r}")
    regions, words = regions.trimmed(), words.trimmed()
    n_img, n_cap = len(regions), len(words)
    weights = attention_weights(regions, words, scale, slope, NODES if features else (nodes,))
    attended = attend(weights, regions, words, nodes)  # (C, I, K, d) for region nodes, (I, C, n, d) for words
    if nodes == "regions":
        node_features, valid = regions.features[None], regions.mask()[None].expand(n_cap, -1, -1)
    else:
        node_features, valid = words.features[None], words.mask()[None].expand(n_img, -1, -1)
    # in place when no gradient is needed: these (C, I, nodes, d) tensors are the largest of the pass, and a
    # fresh one costs a pass over memory that the cache-warm in-place subtraction does not
    delta = (attended - node_features).square() if torch.is_grad_enabled() else attended.sub_(node_features).square_()
    scores = graph(delta.flatten(0, 1), valid.flatten(0, 1))
    scores = scores.view(n_cap, n_img).T if nodes == "regions" else scores.view(n_img, n_cap)
    return scores, (pair_features(weights, regions, words) if features else None)


def block_scores(graph: SimilarityGraph, regions: PaddedSet, words: PaddedSet, nodes: str, scale: float = 10.0,
                 slope: float = 0.1, pairs_per_pass: int = 4096) -> torch.Tensor:
    """Scores (I, C) in float32 of a block of images x captions: the captions sorted by length, then
    :func:`pairwise_scores` on passes of at most ``pairs_per_pass`` pairs (each pass cut to its own longest
    caption, so sorting wastes little on padding)."""
    out = torch.empty(len(regions), len(words), dtype=torch.float32, device=regions.features.device)
    img_step = max(1, min(len(regions), pairs_per_pass))
    cap_step = max(1, pairs_per_pass // img_step)
    order = torch.argsort(words.lengths, stable=True)
    regions = PaddedSet(regions.features.float(), regions.lengths)  # once, not once per pass
    for c0 in range(0, len(words), cap_step):
        idx = order[c0:c0 + cap_step]
        caps = PaddedSet(words.features[idx].float(), words.lengths[idx])
        for i0 in range(0, len(regions), img_step):
            out[i0:i0 + img_step, idx] = pairwise_scores(graph, regions[i0:i0 + img_step], caps, nodes, scale,
                                                         slope)[0]
    return out
