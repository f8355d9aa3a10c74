"""Token-level text encoders: a BERT-family transformer (paper setting) or a BiGRU over word embeddings.

Both map token ids (B, L) with lengths (B,) to per-token features (B, L, E) in the joint space; pooling
is left to the model (GPO for VSE∞, aggregation + max for AFA).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from itrlib.errors import WeightsNotFoundError
from itrlib.nn.functional import safe_l2norm
from itrlib.nn.packed_bert import packable, packed_hidden_states
from itrlib.progress import progress_mode


class BertTokenFeatures(nn.Module):
    """BERT last hidden layer -> Linear(hidden -> embed_size), as VSE∞ ``EncoderText``.

    ``path`` is a local Hugging Face folder (any hidden size works: 384 for MiniLM, 768 for BERT-base).
    The attention mask is ``ids != pad_id``. Parameters of ``self.bert`` form their own optimiser group.
    ``embed_size=None`` returns the raw hidden states (``out_dim`` = hidden size), for models that project
    tokens themselves (AFA's text MLP). ``packed`` runs a ``BertModel`` on the valid tokens only
    (:mod:`itrlib.nn.packed_bert`; ``text.packed_bert``): the same features at valid positions, zero at padded
    ones; other model types, or ``packed=False``, run Hugging Face's padded forward.
    """

    def __init__(self, path: str | Path, embed_size: int | None, pad_id: int = 0, packed: bool = True):
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

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
        self.packed = packed and packable(self.bert)
        hidden = self.bert.config.hidden_size
        self.linear = nn.Linear(hidden, embed_size) if embed_size else nn.Identity()
        self.out_dim = embed_size or hidden

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> features (B, L, E); positions >= lengths are padding."""
        return self.linear(self.hidden_states(ids, ids != self.pad_id)[-1])

    def hidden_states(self, ids: torch.Tensor, valid: torch.Tensor, last: int = 1) -> list[torch.Tensor]:
        """ids (B, L), valid (B, L) bool -> BERT's last ``last`` hidden layers, each (B, L, hidden), oldest first."""
        if self.packed:
            return packed_hidden_states(self.bert, ids, valid, last)
        out = self.bert(input_ids=ids, attention_mask=valid.long(), output_hidden_states=last > 1)
        return list(out.hidden_states[-last:]) if last > 1 else [out.last_hidden_state]

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return list(self.bert.parameters())


class BiGRUTokenFeatures(nn.Module):
    """Word embeddings -> 1-layer bidirectional GRU with the two directions averaged (VSE∞ BiGRU)."""

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
                        bert_projection: bool = True, packed_bert: bool = True) -> nn.Module:
    """``bert`` -> :class:`BertTokenFeatures` on ``tokenizer.path`` (raw hidden states when
    ``bert_projection`` is false; ``packed_bert``: its ``packed``); ``bigru`` -> :class:`BiGRUTokenFeatures`
    (``embed_size`` outputs)."""
    if encoder == "bert":
        return BertTokenFeatures(tokenizer.path, embed_size if bert_projection else None, pad_id=tokenizer.pad_id,
                                 packed=packed_bert)
    if encoder == "bigru":
        return BiGRUTokenFeatures(tokenizer.vocab_size, word_dim, embed_size)
    raise ValueError(f"unknown text encoder {encoder!r} (expected 'bert' or 'bigru')")


class FrozenBertLayerSum(nn.Module):
    """A frozen BERT-family encoder: the sum of its last ``layers`` hidden layers per token (B, L, hidden).

    MVSEN's word features (the release sums BERT-base's last 4 layers under ``torch.no_grad``). Dropout
    follows the module's train/eval mode, as in the release. ``attention_mask=False`` reproduces the
    release, which passes no mask, so [PAD] positions are attended; by default they are masked, and ``packed``
    runs BERT on the valid tokens only (as :class:`BertTokenFeatures`; attended [PAD] positions need the padded
    forward, so ``attention_mask=False`` never packs).
    """

    def __init__(self, path: str | Path, layers: int = 4, pad_id: int = 0, attention_mask: bool = True,
                 packed: bool = True):
        super().__init__()
        self.inner = BertTokenFeatures(path, embed_size=None, pad_id=pad_id, packed=packed and attention_mask)
        self.inner.requires_grad_(False)
        depth = self.inner.bert.config.num_hidden_layers
        if not 1 <= layers <= depth:
            raise ValueError(f"cannot sum the last {layers} layers of a {depth}-layer encoder")
        self.layers = layers
        self.pad_id = pad_id
        self.attention_mask = attention_mask
        self.out_dim = self.inner.out_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> (B, L, hidden), no gradient."""
        valid = ids != self.pad_id if self.attention_mask else torch.ones_like(ids, dtype=torch.bool)
        with torch.no_grad():
            return torch.stack(self.inner.hidden_states(ids, valid, self.layers)).sum(0)


class GRUWordFeatures(nn.Module):
    """Token features (B, L, D) -> 1-layer BiGRU, directions averaged, L2-normalised per word (B, L, H);
    padded positions are 0 (MVSEN's ``EncoderText`` after BERT)."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.rnn = nn.GRU(in_dim, hidden, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(tokens, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        half = out.shape[-1] // 2
        out = (out[..., :half] + out[..., half:]) / 2
        return safe_l2norm(out)
