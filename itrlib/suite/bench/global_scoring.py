"""``global_scoring``: a global model's whole F30K 1K and COCO 5K score matrices as evaluation computes them,
beside one plain matrix product, as a fraction of the machine's float32 matrix-product rate."""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from itrlib.evaluation.scoring import block_shape, sharded_scores
from itrlib.models.base import RetrievalModel
from itrlib.nn.functional import inner_products_fp32
from itrlib.suite.bench.timing import sgemm_rate, time_call

GLOBAL_CASES = {"F30K 1K": (1000, 5000), "COCO 5K": (5000, 25000)}


def global_scoring(device: torch.device | str = "cpu", dim: int = 1024, repeats: int = 3,
                   cases: dict[str, tuple[int, int]] = GLOBAL_CASES) -> pd.DataFrame:
    """One row per test size: seconds of a global model's whole score matrix as evaluation computes it
    (:func:`~itrlib.evaluation.scoring.sharded_scores` of ``inner_products_fp32`` in blocks of
    ``RetrievalModel.score_block_pairs`` pairs, float32 on the CPU), beside one plain matrix product of the
    same embeddings; the GFLOP/s of the former and its fraction of the machine's :func:`sgemm_rate`. Median
    of ``repeats`` calls (:func:`time_call`)."""
    device = torch.device(device)
    sgemm = sgemm_rate(device)
    rows = []
    for case, (n_img, n_cap) in cases.items():
        generator = torch.Generator().manual_seed(0)
        img = F.normalize(torch.randn(n_img, dim, generator=generator), dim=1).to(device)
        cap = F.normalize(torch.randn(n_cap, dim, generator=generator), dim=1).to(device)
        img_shard, cap_shard = block_shape(n_img, n_cap, RetrievalModel.score_block_pairs)
        sharded = time_call(lambda img=img, cap=cap, i=img_shard, c=cap_shard: sharded_scores(
            inner_products_fp32, img, cap, i, c), repeats, warmup=1) / 1e3
        plain = time_call(lambda img=img, cap=cap: img @ cap.T, repeats, warmup=1) / 1e3
        flops = 2 * n_img * n_cap * dim
        rows.append({"matrix": f"{case} ({n_img}x{n_cap}, d {dim})", "evaluation scoring s": sharded,
                     "one matmul s": plain, "GFLOP/s": flops / sharded / 1e9, "sgemm GFLOP/s": sgemm,
                     "fraction of sgemm": flops / sharded / 1e9 / sgemm})
    return pd.DataFrame(rows)
