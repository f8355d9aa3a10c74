"""A Hugging Face ``BertModel`` run on the captions' tokens only: the padding is removed from every linear
layer, layer norm, GELU and dropout; only the attention scores, per caption, are computed padded.

A batch of captions of mixed lengths padded to the longest spends most of BERT's time (its linear layers)
on [PAD] positions that a masked forward then ignores. Packing the valid tokens into one (T, H) matrix gives
the same features at every valid position (the masked attention of the padded forward gives [PAD] keys an
exact zero weight) up to float rounding, for T / (B L) of the linear layers' work. The module's own weights
are used, so training, ``eval()`` and checkpoints are unchanged. Dropout masks are drawn in the padded shape,
in the padded forward's order, and the valid rows kept: the same random stream gives the same masks, so a
training run packed follows the padded run up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def packable(bert: nn.Module) -> bool:
    """Whether ``bert`` is an encoder-only ``BertModel`` (absolute positions, no cross-attention, no chunked
    feed-forward) whose forward :func:`packed_hidden_states` reproduces."""
    from transformers import BertModel

    if not isinstance(bert, BertModel):
        return False
    config = bert.config
    return (not getattr(config, "is_decoder", False) and not getattr(config, "add_cross_attention", False)
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and not getattr(config, "chunk_size_feed_forward", 0))


def packed_hidden_states(bert: nn.Module, ids: torch.Tensor, valid: torch.Tensor, last: int = 1
                         ) -> list[torch.Tensor]:
    """ids (B, L), valid (B, L) bool (at least one True per row) -> the last ``last`` hidden layers of
    ``bert`` (a :func:`packable` model), each (B, L, H), oldest first; positions where ``valid`` is false are
    zero. Equals ``bert(input_ids=ids, attention_mask=valid).hidden_states[-last:]`` at valid positions."""
    batch, length = ids.shape
    embedded = bert.embeddings(input_ids=ids)  # (B, L, H): word + position + type, LayerNorm, dropout
    hidden = embedded.shape[-1]
    where = valid.reshape(-1).nonzero().squeeze(1)  # (T,) flat indices of the valid tokens
    x = embedded.reshape(batch * length, hidden).index_select(0, where)  # (T, H)
    key_mask = valid[:, None, None, :]  # (B, 1, 1, L): [PAD] keys get no weight
    layers = bert.encoder.layer
    kept = []
    for depth, layer in enumerate(layers):
        x = _layer(layer, x, where, key_mask, batch, length)
        if depth >= len(layers) - last:
            kept.append(embedded.new_zeros(batch * length, hidden).index_copy(0, where, x).view(batch, length, hidden))
    return kept


def _layer(layer: nn.Module, x: torch.Tensor, where: torch.Tensor, key_mask: torch.Tensor, batch: int,
           length: int) -> torch.Tensor:
    """One ``BertLayer`` on packed tokens x (T, H) -> (T, H)."""
    attention = layer.attention.self
    heads, width = attention.num_attention_heads, attention.attention_head_size
    hidden = x.shape[1]
    weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
    bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
    qkv = F.linear(x, weight, bias)  # (T, 3H): one product for the three projections
    padded = qkv.new_zeros(batch * length, 3 * hidden).index_copy(0, where, qkv)
    q, k, v = padded.view(batch, length, 3, heads, width).permute(2, 0, 3, 1, 4)  # each (B, heads, L, width)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, scale=attention.scaling,
                                             dropout_p=attention.dropout.p if attention.training else 0.0)
    context = context.transpose(1, 2).reshape(batch * length, hidden).index_select(0, where)  # (T, H)
    out = layer.attention.output
    x = out.LayerNorm(_dropout(out.dropout, out.dense(context), where, batch * length) + x)
    ffn = layer.output
    return ffn.LayerNorm(_dropout(ffn.dropout, ffn.dense(layer.intermediate(x)), where, batch * length) + x)


def _dropout(module: nn.Dropout, x: torch.Tensor, where: torch.Tensor, rows: int) -> torch.Tensor:
    """``module`` applied to packed x (T, H) with its mask drawn for all ``rows`` padded rows (B L, H), as
    ``nn.Dropout`` draws it on the padded tensor, then cut to the valid rows ``where``."""
    if not module.training or module.p == 0:
        return x
    if module.p == 1:
        return torch.zeros_like(x)
    keep = 1 - module.p
    noise = x.new_empty(rows, x.shape[1]).bernoulli_(keep).div_(keep)
    return x * noise.index_select(0, where)
