"""Evaluation: ranks and recalls, protocols (F30K 1K, COCO 5-fold 1K, COCO 5K) and sharded scoring."""

from itrlib.evaluation.metrics import Ranks, i2t_ranks, recall_summary, retrieval_metrics, t2i_ranks
from itrlib.evaluation.protocols import (
    PROTOCOLS,
    Protocol,
    evaluate_blocks,
    evaluate_scores,
    fold_bounds,
    get_protocol,
    protocol_blocks,
)
from itrlib.evaluation.scoring import block_shape, sharded_scores

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "Ranks",
    "block_shape",
    "evaluate_blocks",
    "evaluate_scores",
    "fold_bounds",
    "get_protocol",
    "i2t_ranks",
    "protocol_blocks",
    "recall_summary",
    "retrieval_metrics",
    "sharded_scores",
    "t2i_ranks",
]
