"""VSE∞ on precomp region features (Chen et al., CVPR 2021): the suite's baseline.

image regions (B, K, D_img) -> fc + residual MLP -> GPO -> L2 norm -> v (B, E)
caption tokens (B, L)       -> BERT/BiGRU -> Linear -> GPO -> L2 norm -> t (B, E)
score = v @ t.T; loss = VSE++ hinge triplet (sum over negatives for ``mean_warmup_epochs``, then hardest).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from itrlib.config import TextConfig, check_bounds
from itrlib.data.collate import Batch
from itrlib.errors import ConfigError
from itrlib.losses.triplet import triplet_loss
from itrlib.models.base import Extras, GlobalEmbeddingModel, HardestNegativeSchedule, encoder_param_groups
from itrlib.models.registry import register_model
from itrlib.nn.functional import l2norm
from itrlib.nn.gpo import GPO
from itrlib.nn.mlp import ResidualProjection
from itrlib.nn.text_encoders import build_token_encoder


@dataclass
class ProjectionConfig:
    """The encoder sizes every global-embedding model shares (VSE∞, AFA, USER): region fc + residual
    MLP, the BiGRU's word embeddings, BERT's learning-rate factor (defaults: the official VSE∞ code)."""

    name: str = "vse"
    embed_size: int = 1024
    """Joint embedding size."""
    mlp_hidden: int | None = None
    """Hidden size of the residual MLP(s) (``None``: embed_size // 2, as VSE∞)."""
    word_dim: int = 300
    """Word-embedding size of the BiGRU text encoder (unused with BERT)."""
    bert_lr_factor: float = 0.1
    """BERT parameters train at lr * this factor (official code; neither paper says)."""

    def validate(self) -> None:
        """ConfigError unless the sizes are >= 1 (``mlp_hidden`` null: embed_size // 2, so embed_size >= 2) and
        ``bert_lr_factor`` >= 0."""
        check_bounds("model", self, ("embed_size", "word_dim"), 1)
        check_bounds("model", self, ("mlp_hidden",), 1, optional=True)
        check_bounds("model", self, ("bert_lr_factor",), 0)
        if self.mlp_hidden is None and self.embed_size < 2:
            raise ConfigError(f"model.embed_size must be >= 2 when model.mlp_hidden is null (the MLP's hidden size "
                              f"is embed_size // 2), got {self.embed_size}")


@dataclass
class VSEEncoderConfig(ProjectionConfig):
    """The VSE∞ encoder fields (projection sizes and GPO), shared by VSE∞ and USER (defaults: the
    official ``train_region.sh`` / ``arguments.py``)."""

    gpo_pe_dim: int = 32
    gpo_hidden: int = 32

    def validate(self) -> None:
        super().validate()
        check_bounds("model", self, ("gpo_pe_dim", "gpo_hidden"), 1)
        if self.gpo_pe_dim % 2:
            raise ConfigError(f"model.gpo_pe_dim must be even (sine and cosine position codes), got {self.gpo_pe_dim}")


@dataclass
class VSEConfig(HardestNegativeSchedule, VSEEncoderConfig):
    """VSE∞ hyper-parameters (defaults: the official ``train_region.sh`` / ``arguments.py``)."""

    def validate(self) -> None:
        super().validate()
        self.validate_schedule()


class VSEModel(GlobalEmbeddingModel):
    """Global-embedding model: one vector per image and per caption, cosine similarity."""

    def __init__(self, config: VSEConfig, feature_dim: int, text_encoder: nn.Module):
        super().__init__(config)
        self.region_proj = ResidualProjection(feature_dim, config.embed_size, config.mlp_hidden)
        self.image_pool = GPO(config.gpo_pe_dim, config.gpo_hidden)
        self.text_encoder = text_encoder
        self.text_pool = GPO(config.gpo_pe_dim, config.gpo_hidden)

    def encode_images(self, images: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None
                      ) -> torch.Tensor:
        """(B, K, D_img), (B,) -> (B, E) unit vectors."""
        return l2norm(self.image_pool(self.region_proj(images), lengths).float())

    def encode_captions(self, captions: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None
                        ) -> torch.Tensor:
        """(B, L), (B,) -> (B, E) unit vectors."""
        return l2norm(self.text_pool(self.text_encoder(captions, lengths), lengths).float())

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        scores = self.score(*self.batch_embeddings(batch))
        return {"triplet": triplet_loss(scores, self.config.margin, hardest=self.hardest)}

    def param_groups(self, lr: float) -> list[dict]:
        """Text (non-pretrained) at lr, pretrained BERT at lr * bert_lr_factor, image side at lr."""
        return encoder_param_groups(lr, self.config.bert_lr_factor, self.text_encoder, [self.text_pool],
                                    [self.region_proj, self.image_pool])


@register_model("vse", VSEConfig)
def build_vse(config: VSEConfig, *, feature_dim: int, text: TextConfig, tokenizer) -> VSEModel:
    encoder = build_token_encoder(text.encoder, tokenizer, config.embed_size, config.word_dim,
                                  packed_bert=text.packed_bert)
    return VSEModel(config, feature_dim, encoder)
