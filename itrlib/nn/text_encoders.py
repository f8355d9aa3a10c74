"""Token-level text encoders: a BERT-family transformer (paper setting) or a BiGRU over word embeddings.

Both map token ids (B, L) with lengths (B,) to per-token features (B, L, E) in the joint space; pooling
is left to the model (GPO for VSE-infinity, aggregation + max for AFA).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from itrlib.errors import WeightsNotFoundError


class BertTokenFeatures(nn.Module):
    """BERT last hidden layer -> Linear(hidden -> embed_size), as VSE-infinity ``EncoderText``.

    ``path`` is a local Hugging Face folder (any hidden size works: 384 for MiniLM, 768 for BERT-base).
    The attention mask is ``ids != pad_id``. Parameters of ``self.bert`` form their own optimiser group.
    ``embed_size=None`` returns the raw hidden states (``out_dim`` = hidden size), for models that project
    tokens themselves (AFA's text MLP).
    """

    def __init__(self, path: str | Path, embed_size: int | None, pad_id: int = 0):
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        from itrlib.progress import progress_mode

        if progress_mode() != "bars":  # no "Loading weights" bar in logs and executed notebooks
            hf_logging.disable_progress_bar()
        try:
            self.bert = AutoModel.from_pretrained(str(path), local_files_only=True)
        except OSError as exc:
            raise WeightsNotFoundError(
                f"could not load BERT weights from {path}: {exc}. Set text.bert_path to a local folder "
                "holding config.json and the weights (see README, 'Text encoder weights')."
            ) from exc
        # fp32 master weights whatever the folder stores: transformers 5 keeps a float16 checkpoint in
        # float16, and an fp16 BERT under bf16 autocast gave a NaN loss at the first step on CUDA
        self.bert.float()
        self.pad_id = pad_id
        hidden = self.bert.config.hidden_size
        self.linear = nn.Linear(hidden, embed_size) if embed_size else nn.Identity()
        self.out_dim = embed_size or hidden

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> features (B, L, E); positions >= lengths are padding."""
        hidden = self.bert(input_ids=ids, attention_mask=(ids != self.pad_id).long()).last_hidden_state
        return self.linear(hidden)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return list(self.bert.parameters())


class BiGRUTokenFeatures(nn.Module):
    """Word embeddings -> 1-layer bidirectional GRU with the two directions averaged (VSE-infinity BiGRU)."""

    def __init__(self, vocab_size: int, word_dim: int, embed_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers=1, batch_first=True, bidirectional=True)
        self.out_dim = embed_size
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> features (B, L, E); padded positions are zero."""
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        half = out.shape[-1] // 2
        return (out[..., :half] + out[..., half:]) / 2

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return []


def build_token_encoder(encoder: str, tokenizer, embed_size: int, word_dim: int = 300,
                        bert_projection: bool = True) -> nn.Module:
    """``bert`` -> :class:`BertTokenFeatures` on ``tokenizer.path`` (raw hidden states when
    ``bert_projection`` is false); ``bigru`` -> :class:`BiGRUTokenFeatures` (``embed_size`` outputs)."""
    if encoder == "bert":
        return BertTokenFeatures(tokenizer.path, embed_size if bert_projection else None, pad_id=tokenizer.pad_id)
    if encoder == "bigru":
        return BiGRUTokenFeatures(tokenizer.vocab_size, word_dim, embed_size)
    raise ValueError(f"unknown text encoder {encoder!r} (expected 'bert' or 'bigru')")
