"""``mvsen_scoring``: MVSEN's batched pairwise scoring against :func:`caption_loop_scores`, the release's
``shard_xattn`` way, at the paper's widths on the same inputs: ratio, max |delta|, GFLOP/s and sgemm
fraction, projected full and two-stage COCO 5K times."""

from __future__ import annotations

from functools import partial

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F

from itrlib.models.mvsen import DIRECTIONS, NOMINAL_NODES, PASS_MB
from itrlib.nn.mvsen_similarity_reasoning import SimilarityGraph, block_scores
from itrlib.nn.padded import PaddedSet
from itrlib.suite.bench.timing import one_timed_call, sgemm_rate

FULL_EVALUATION_PAIRS = {"F30K 1K": 1000 * 5000, "COCO 5K": 5000 * 25000}


DELTA = "max |delta|"


SCORING_TOLERANCE = 1e-4
"""Largest |batched - release-style loop| score accepted by the MVSEN scoring bench (float32 sums in another
order differ by ~1e-6 at the paper's widths; a wrong mask or node gives differences of order 0.1)."""


def _release_l2norm(x: torch.Tensor, dim: int, eps: float = 1e-8) -> torch.Tensor:
    """The release's L2 normalisation, ``x / (sqrt(sum x^2) + eps)``, as its separate element-wise passes."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def _release_attention(source: torch.Tensor, query: torch.Tensor, scale: float, slope: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Both attention directions of one caption against a block of images, as the release computes them
    (``weighted_Features``): source (B, S, d), query (B, Q, d) -> (source attended at each query position
    (B, Q, d), query attended at each source position (B, S, d)). Each direction takes its own LeakyReLU,
    L2 norm, contiguous transpose and softmax."""
    dots = torch.bmm(source, query.transpose(1, 2))  # (B, S, Q)
    along_query = _release_l2norm(F.leaky_relu(dots, slope), dim=2)
    along_source = _release_l2norm(F.leaky_relu(dots.transpose(1, 2), slope), dim=2)
    at_query = torch.softmax(scale * along_query.transpose(1, 2).contiguous(), dim=2)  # (B, Q, S)
    at_source = torch.softmax(scale * along_source.transpose(1, 2).contiguous(), dim=2)  # (B, S, Q)
    source_at_query = torch.bmm(source.transpose(1, 2), at_query.transpose(1, 2)).transpose(1, 2)
    query_at_source = torch.bmm(query.transpose(1, 2), at_source.transpose(1, 2)).transpose(1, 2)
    return source_at_query, query_at_source


def caption_loop_scores(graph: SimilarityGraph, regions: PaddedSet, words: PaddedSet, nodes: str,
                        scale: float = 10.0, slope: float = 0.1, image_shard: int = 64) -> torch.Tensor:
    """Scores (I, C) computed the way the release evaluates (``evaluation.shard_xattn`` + ``Reason_*``),
    operation for operation, in code of its own.

    For each block of ``image_shard`` images and for each caption, one at a time: the caption cut to its
    length and copied once per image; both attention directions in full (:func:`_release_attention`), though
    one of them only feeds two means that scoring discards (computed here too); ``(attended - nodes)^2``, the
    weight-normed projection and the L2 norm; per GCN layer the query and key projections applied separately to
    every node, the edge softmax, the product and the residual; the scoring head on every node, then the mean.
    Same network and weights as :func:`~itrlib.nn.mvsen_similarity_reasoning.pairwise_scores`: its reference in
    tests (``image_shard=1``: one pair at a time) and in ``make bench``.
    """
    out = torch.empty(len(regions), len(words), dtype=torch.float32, device=regions.features.device)
    for i0 in range(0, len(regions), image_shard):
        imgs = regions.features[i0:i0 + image_shard]
        for c in range(len(words)):
            cap = words.features[c:c + 1, :int(words.lengths[c])].repeat(len(imgs), 1, 1)
            source, query = (cap, imgs) if nodes == "regions" else (imgs, cap)
            attended, other_view = _release_attention(source, query, scale, slope)
            m = _release_l2norm(graph.project((attended - query).pow(2)), dim=-1)
            for layer in graph.layers:
                edges = torch.softmax(torch.bmm(layer.query(m), layer.key(m).transpose(1, 2)), dim=-1)
                m = torch.bmm(edges, m) + m
            hidden = torch.tanh(graph.hidden(m.reshape(-1, m.shape[-1]))).view(*m.shape[:2], -1)
            out[i0:i0 + image_shard, c] = graph.score(hidden).view(len(imgs), -1).mean(dim=1)
            # the per-caption means of both attended views, which the release returns beside the scores
            _means = (attended.mean(dim=0).mean(dim=0, keepdim=True), other_view.mean(dim=0).mean(dim=0, keepdim=True))
    return out


def mvsen_macs(n_img: int, regions: int, lengths: torch.Tensor, dim: int, sim_dim: int, hidden: int, layers: int,
               nodes: str) -> float:
    """Multiply-adds that scoring ``n_img`` images of ``regions`` regions against captions of ``lengths`` words
    needs in the batched network: the attention dots and the attended view (K x n x d each), the projection
    (N x d x d_c), per GCN layer the folded edge product (N x d_c x d_c) and the two (N x N x d_c) products, the
    hidden layer (N x d_c x h); N = K (region nodes) or n (word nodes). The release's loop does more: both
    attention views, two projections per GCN layer."""
    n = lengths.double()
    count = torch.full_like(n, regions) if nodes == "regions" else n
    gcn = layers * (count * sim_dim**2 + 2 * count**2 * sim_dim)
    per_caption = 2 * regions * n * dim + count * dim * sim_dim + gcn + count * sim_dim * hidden
    return float(n_img * per_caption.sum())


TWO_STAGE_SHORTLISTS = (16, 32, 64, 128)
"""Shortlist sizes M of the projected two-stage COCO 5K evaluation (:func:`mvsen_scoring`)."""


COCO5K = (5000, 25000)


def mvsen_scoring(device: torch.device | str = "cpu", n_img: int = 64, n_cap: int = 256, dim: int = 1024,
                  seed: int = 0, shortlists: tuple[int, ...] = TWO_STAGE_SHORTLISTS
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MVSEN's pairwise scoring, both directions, on the same random inputs and weights.

    First table, one row per direction: pairs/s of the release's loop (:func:`caption_loop_scores`) and of the
    batched :func:`block_scores`, the speed-up, the max |delta| between them (the bench fails above
    :data:`SCORING_TOLERANCE`), the useful GFLOP/s of each (:func:`mvsen_macs`) and its fraction of the
    machine's :func:`sgemm_rate`, and the projected full F30K 1K / COCO 5K scoring minutes.
    Second table, one row per direction and shortlist size M: the projected minutes of a COCO 5K evaluation
    reranking M candidates per query (5,000 image queries x M captions + 25,000 caption queries x M images,
    one (1, M) or (M, 1) block per query as ``itrlib.evaluation.two_stage.rerank`` scores them, at the rates
    measured on such blocks here), beside full scoring."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sim_dim, hidden, layers = 256, 32, 3
    graph = SimilarityGraph(dim, sim_dim, hidden, layers).to(device).eval()
    # the first n_img images and n_cap captions are the full-scoring block; two-stage blocks take up to max(M)
    n_img_all, n_cap_all = max(n_img, *shortlists), max(n_cap, *shortlists)
    all_regions = PaddedSet(torch.randn(n_img_all, 36, dim, generator=generator),
                            torch.full((n_img_all,), 36)).to(device)
    all_lengths = torch.randint(10, 21, (n_cap_all,), generator=generator)
    all_words = PaddedSet(torch.randn(n_cap_all, 20, dim, generator=generator), all_lengths).to(device)
    regions, words, lengths = all_regions[:n_img], all_words[:n_cap], all_lengths[:n_cap]
    per_pass = PASS_MB.get(device.type, PASS_MB["cuda"]) * 2**20 // (4 * NOMINAL_NODES * dim)
    sgemm = sgemm_rate(device)
    rows, projections = [], []
    for direction, nodes in DIRECTIONS.items():
        with torch.no_grad():
            loop_scores, loop_s = one_timed_call(partial(caption_loop_scores, graph, regions, words, nodes), device)
            batched = partial(block_scores, graph, regions, words, nodes, pairs_per_pass=per_pass)
            batched_scores, batched_s = one_timed_call(batched, device)
            # the blocks of a two-stage rerank: one image against M captions, one caption against M images
            query_rates = {}
            for m in shortlists:
                _, one_image = one_timed_call(partial(block_scores, graph, all_regions[:1], all_words[:m], nodes,
                                                pairs_per_pass=per_pass), device)
                _, one_caption = one_timed_call(partial(block_scores, graph, all_regions[:m], all_words[:1], nodes,
                                                  pairs_per_pass=per_pass), device)
                query_rates[m] = (m / one_image, m / one_caption)
        pairs = n_img * n_cap
        loop_rate, batched_rate = pairs / loop_s, pairs / batched_s
        flops = 2 * mvsen_macs(n_img, 36, lengths, dim, sim_dim, hidden, layers, nodes)
        label = f"{direction} ({nodes} as nodes)"
        row = {"direction": label, "release-style loop pairs/s": loop_rate, "batched pairs/s": batched_rate,
               "speed-up": batched_rate / loop_rate, DELTA: float((loop_scores - batched_scores).abs().max()),
               "batched GFLOP/s": flops / batched_s / 1e9, "loop GFLOP/s": flops / loop_s / 1e9,
               "sgemm GFLOP/s": sgemm, "batched fraction of sgemm": flops / batched_s / 1e9 / sgemm}
        for case, count in FULL_EVALUATION_PAIRS.items():
            row[f"{case} loop min"] = count / loop_rate / 60
            row[f"{case} batched min"] = count / batched_rate / 60
        if not row[DELTA] <= SCORING_TOLERANCE:
            raise RuntimeError(f"MVSEN scoring bench, {direction}: the batched scores differ from the release-style "
                               f"loop's by up to {row[DELTA]:.2e} (tolerance {SCORING_TOLERANCE:.0e})")
        rows.append(row)
        n_images, n_captions = COCO5K
        for m, (per_image_rate, per_caption_rate) in query_rates.items():
            minutes = (n_images * m / per_image_rate + n_captions * m / per_caption_rate) / 60
            projections.append({"direction": label, "shortlist M": m, "two-stage COCO 5K min": minutes,
                                "full COCO 5K min (batched)": n_images * n_captions / batched_rate / 60,
                                "full COCO 5K min (release loop)": n_images * n_captions / loop_rate / 60})
    return pd.DataFrame(rows), pd.DataFrame(projections)


def plot_two_stage(table: pd.DataFrame) -> plt.Figure:
    """The second table of :func:`mvsen_scoring`: projected COCO 5K minutes against the shortlist size M per
    direction (solid), full scoring batched (dashed) and with the release's loop (dotted); log scale."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for (direction, rows), color in zip(table.groupby("direction", sort=False), ("tab:blue", "tab:orange"),
                                        strict=False):
        ax.plot(rows["shortlist M"], rows["two-stage COCO 5K min"], "o-", color=color, label=f"{direction}: two-stage")
        ax.axhline(rows["full COCO 5K min (batched)"].iloc[0], color=color, ls="--",
                   label=f"{direction}: full, batched")
        ax.axhline(rows["full COCO 5K min (release loop)"].iloc[0], color=color, ls=":",
                   label=f"{direction}: full, release loop")
    ax.set(xscale="log", yscale="log", xlabel="shortlist M (candidates rescored per query)",
           ylabel="projected minutes, COCO 5K (5,000 x 25,000)",
           title="MVSEN: projected COCO 5K evaluation time of one direction model")
    shortlists = sorted(set(table["shortlist M"]))
    ax.set_xticks(shortlists, labels=[str(m) for m in shortlists])
    ax.set_xticks([], minor=True)
    ax.axhline(60, color="grey", lw=0.8)
    ax.annotate("1 hour", (shortlists[0], 60), xytext=(2, 3), textcoords="offset points", fontsize=7, color="grey")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
