"""USER: unified semantic enhancement with momentum contrast (Zhang et al., IEEE TIP 2024).

image regions (B, K, D_img) [+ CLIP vector (B, D_clip)] -> SGE or CGE -> fc + residual MLP -> GPO -> L2 norm
caption tokens (B, L) -> BERT/BiGRU -> Linear -> GPO -> L2 norm (the VSE∞ text side)
score = v @ t.T; loss = UTO (eq. 17-21): lambda * L_mini + L_DVQ + L_DTQ.

Momentum contrast: frozen key copies of the image and text encoders follow the query encoders by an EMA of
the parameters; their keys of each batch are pushed into two FIFO queues (Q keys each) that serve as the
negatives of the queue terms. Order within one training step, as the released code (zhangy0822/USER,
``USER.forward_emb``): query forward, momentum update, key forward (no grad; the key image encoder in train
mode, the key BERT in eval mode: ``key_bert_dropout``), loss against the queues as they were, then the keys are
enqueued. Key encoders and queues are buffers and
modules of this model, so they are in every checkpoint and a resumed run continues bit-exactly; evaluation
uses the query encoders only.

Defaults follow the released code; the paper's printed readings are switches (docs/PAPER_DIFFERENCES.md,
section 3). Table IV's rows are :data:`ABLATION_ROWS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from itrlib.config import RunConfig, TextConfig, check_bounds, check_choices
from itrlib.data.collate import Batch
from itrlib.data.precomp import PrecompSplit
from itrlib.data.side_inputs import SideInput, side_rows
from itrlib.errors import ConfigError
from itrlib.losses.uto import DIAGONALS, POSITIVES, uto_loss
from itrlib.models.base import Extras, GlobalEmbeddingModel, encoder_param_groups
from itrlib.models.registry import register_model
from itrlib.models.vse import VSEEncoderConfig
from itrlib.nn.distributed import gather_detached
from itrlib.nn.functional import l2norm
from itrlib.nn.gpo import GPO
from itrlib.nn.mlp import ResidualProjection
from itrlib.nn.text_encoders import BertTokenFeatures, build_token_encoder
from itrlib.nn.user_momentum import FeatureQueue, check_queue_size, make_key_encoder, momentum_update
from itrlib.nn.user_semantic_enhancement import ATTENTION_NORMS, CGE, LOCAL_NORMS, SGE

ENHANCEMENTS = ("sge", "cge", "none")
CLIP_INPUT = SideInput("clip", how_to_build="python -m itrlib data clip-features --images <image folder> "
                                             "--ids {root}/<split>_ids.txt --model <local CLIP folder>",
                       width_key="model.clip_dim")
"""``{split}_clip.npy``: one CLIP image embedding per image (``python -m itrlib data clip-features``)."""


@dataclass
class USERConfig(VSEEncoderConfig):
    """USER hyper-parameters (defaults: the released code and ``train_region_f30k.sh``); the encoder fields
    (embed_size, mlp_hidden, GPO sizes, word_dim, bert_lr_factor) are VSE∞'s."""

    name: str = "user"
    enhancement: str = "sge"
    """Global semantic enhancement of the regions (Table IV "GSE"): ``sge`` (eq. 1-7, the released model),
    ``cge`` (eq. 8, needs ``{split}_clip.npy``; not in the release) or ``none`` (rows without GSE: only the
    enhancement is dropped, fc + MLP + GPO stay)."""
    num_slots: int = 36
    """Regions per image that SGE's slot BatchNorm expects (``sge_local_norm="slot"``)."""
    sge_local_norm: str = "slot"
    """SGE local branch BatchNorm: ``slot`` (released code: one channel per region slot) or ``feature``."""
    sge_dropout: float = 0.4
    """Dropout in both SGE branches (released code; not in the paper)."""
    attention_norm: str = "l2"
    """Region attention weights of eq. 6: ``l2`` (released code: softmax, then L2-normalised over the
    regions) or ``softmax`` (the paper's unit-sum weights)."""
    attention_scale: float = 1.0
    """Scale of the region-attention logits (released code: ``attention_lamda`` = 1)."""
    clip_dim: int = 512
    """Width of the CLIP vectors in ``{split}_clip.npy`` (CGE; ViT-B/32: 512)."""
    cge_hidden: int = 2048
    """Hidden width of CGE's eq. 8 MLP (paper: 2048)."""
    gamma: float = 90.0
    """UTO temperature scale gamma (code: ``mu``)."""
    margin: float = 0.5
    """UTO margin epsilon (code: ``gama``)."""
    mini_batch_weight: float = 20.0
    """lambda, the weight of L_mini (code: ``loss_lamda``; F30K 20, COCO 1)."""
    diagonal: str = "zeroed"
    """Positives inside L_mini's sums: ``zeroed`` (released code) or ``excluded`` (paper, m != i)."""
    positive: str = "relu"
    """Positive term ``log(1 + relu(s))`` (released code) or ``raw`` ``log(1 + s)`` (paper)."""
    dvq: bool = True
    """Dynamic visual queue: caption queries against a queue of image keys (Table IV)."""
    dtq: bool = True
    """Dynamic textual queue: image queries against a queue of caption keys (Table IV)."""
    queue_size: int = 2048
    """Q, keys per queue (F30K 2048, COCO 4096); a multiple of ``train.batch_size``."""
    momentum: float = 0.999
    """m of the key encoders' EMA (code: ``moco_r``)."""
    queue_seed: int = 0
    """Seed of the queues' initial noise (uniform [0, 1) rows, L2-normalised, as the released code)."""
    key_bert_dropout: bool = False
    """Dropout of the key (momentum) text encoder's BERT during training. Off as in the released code: its
    key text encoder is a copy of a BERT that ``from_pretrained`` left in eval mode, and ``train_start()``
    switches only the query encoders to train mode (the key image encoder does train, as here). ``true``
    lets ``model.train()`` turn the key BERT's dropout on with the rest of the model."""

    def validate(self) -> None:
        check_choices("model", {"enhancement": (self.enhancement, ENHANCEMENTS),
                                "sge_local_norm": (self.sge_local_norm, LOCAL_NORMS),
                                "attention_norm": (self.attention_norm, ATTENTION_NORMS),
                                "diagonal": (self.diagonal, DIAGONALS), "positive": (self.positive, POSITIVES)})
        super().validate()
        check_bounds("model", self, ("num_slots", "clip_dim", "cge_hidden", "queue_size"), 1)
        check_bounds("model", self, ("gamma",), 0, low_open=True)
        check_bounds("model", self, ("margin", "mini_batch_weight"), 0)
        check_bounds("model", self, ("momentum",), 0, 1)
        check_bounds("model", self, ("sge_dropout",), 0, 1, high_open=True)

    @property
    def slot_norm(self) -> bool:
        """SGE with one BatchNorm channel per region slot: every image must bring exactly ``num_slots`` regions."""
        return self.enhancement == "sge" and self.sge_local_norm == "slot"

    def check_run(self, run: RunConfig) -> None:
        """Fields across sections: the queues take whole batches (Q a multiple of the batch size)."""
        if self.dvq or self.dtq:
            check_queue_size(self.queue_size, run.train.batch_size)

    def check_training(self, run: RunConfig, splits: Sequence[PrecompSplit]) -> None:
        """Before training (not at load: evaluation drops no region and may read other data): SGE's slot
        BatchNorm needs all ``num_slots`` regions of every image, so no region dropout and K = num_slots."""
        if not self.slot_norm:
            return
        if run.data.region_keep_prob < 1:
            raise ConfigError(f"data.region_keep_prob={run.data.region_keep_prob} drops regions at training, but "
                              f"SGE's slot BatchNorm (model.sge_local_norm=slot) needs all model.num_slots="
                              f"{self.num_slots} regions of every image: set data.region_keep_prob=1.0 (as the "
                              "released USER loader) or model.sge_local_norm=feature")
        for split in splits:
            self.check_split(split)

    def check_split(self, split: PrecompSplit) -> None:
        """Before encoding ``split`` (training or evaluation): SGE's slot BatchNorm takes exactly
        ``num_slots`` regions per image."""
        if self.slot_norm and split.n_regions != self.num_slots:
            raise ConfigError(f"model.num_slots={self.num_slots} does not match the {split.n_regions} regions "
                              f"per image of {split.images_path} (split {split.split!r}): SGE's slot BatchNorm "
                              f"(model.sge_local_norm=slot) needs one slot per region; set model.num_slots="
                              f"{split.n_regions}")


class USERImageEncoder(nn.Module):
    """regions (B, K, D_img), lengths (B,) [, clip (B, D_clip)] -> (B, E) unit vectors.

    SGE/CGE (or nothing) on the raw regions, then ``fc(x) + mlp(x)`` on the enhanced regions (both take x,
    as the released ``EncoderImageAggr``), GPO over the valid regions and L2 normalisation.
    """

    def __init__(self, config: USERConfig, feature_dim: int):
        super().__init__()
        self.enhancement = config.enhancement
        if config.enhancement == "sge":
            self.enhance = SGE(feature_dim, config.num_slots, config.sge_local_norm, config.sge_dropout,
                               config.attention_norm, config.attention_scale)
        elif config.enhancement == "cge":
            self.enhance = CGE(feature_dim, config.clip_dim, config.cge_hidden, config.attention_norm,
                               config.attention_scale)
        self.proj = ResidualProjection(feature_dim, config.embed_size, config.mlp_hidden)
        self.pool = GPO(config.gpo_pe_dim, config.gpo_hidden)

    def forward(self, regions: torch.Tensor, lengths: torch.Tensor, clip: torch.Tensor | None = None
                ) -> torch.Tensor:
        if self.enhancement == "sge":
            regions = self.enhance(regions, lengths)
        elif self.enhancement == "cge":
            regions = self.enhance(regions, lengths, clip)
        return l2norm(self.pool(self.proj(regions), lengths).float())


class USERTextEncoder(nn.Module):
    """token ids (B, L), lengths (B,) -> (B, E) unit vectors: token features -> GPO -> L2 norm."""

    def __init__(self, tokens: nn.Module, config: USERConfig):
        super().__init__()
        self.tokens = tokens
        self.pool = GPO(config.gpo_pe_dim, config.gpo_hidden)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return l2norm(self.pool(self.tokens(ids, lengths), lengths).float())


class USERModel(GlobalEmbeddingModel):
    """Query encoders (trained), key encoders and queues (only for the queue terms that are on)."""

    def __init__(self, config: USERConfig, feature_dim: int, token_encoder: nn.Module):
        super().__init__(config)
        self.side_inputs = (replace(CLIP_INPUT, width=config.clip_dim),) if config.enhancement == "cge" else ()
        self.image_encoder = USERImageEncoder(config, feature_dim)
        self.text_encoder = USERTextEncoder(token_encoder, config)
        # DVQ needs image keys (its queue and its positive), DTQ caption keys: a key encoder per queue in use
        self.key_image_encoder = make_key_encoder(self.image_encoder) if config.dvq else None
        self.key_text_encoder = make_key_encoder(self.text_encoder) if config.dtq else None
        self.image_queue = FeatureQueue(config.queue_size, config.embed_size, config.queue_seed) \
            if config.dvq else None
        self.caption_queue = FeatureQueue(config.queue_size, config.embed_size, config.queue_seed + 1) \
            if config.dtq else None

    def train(self, mode: bool = True) -> USERModel:
        """``nn.Module.train``, except that the key text encoder's BERT stays in eval mode (no dropout) unless
        ``model.key_bert_dropout`` (the released code's behaviour, see that field)."""
        super().train(mode)
        if mode and self.key_text_encoder is not None and not self.config.key_bert_dropout:
            tokens = self.key_text_encoder.tokens
            if isinstance(tokens, BertTokenFeatures):
                tokens.bert.eval()
        return self

    def _clip(self, extras: Extras | None) -> torch.Tensor | None:
        if self.config.enhancement != "cge":
            return None
        return side_rows(extras, CLIP_INPUT, self.config.clip_dim,
                         "CGE needs the CLIP vectors of {split}_clip.npy (model.clip_dim)").float()

    def encode_images(self, images: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None
                      ) -> torch.Tensor:
        """(B, K, D_img), (B,) [, extras["clip"] (B, D_clip)] -> (B, E) unit vectors (query encoder)."""
        return self.image_encoder(images, lengths, self._clip(extras))

    def encode_captions(self, captions: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None
                        ) -> torch.Tensor:
        """(B, L), (B,) -> (B, E) unit vectors (query encoder)."""
        return self.text_encoder(captions, lengths)

    @torch.no_grad()
    def _keys(self, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Momentum-update the key encoders, then encode the batch with them: (B, E) image / caption keys."""
        m = self.config.momentum
        key_images = key_captions = None
        if self.key_image_encoder is not None:
            momentum_update(self.key_image_encoder, self.image_encoder, m)
            key_images = self.key_image_encoder(batch.images, batch.image_lengths, self._clip(batch.extras))
        if self.key_text_encoder is not None:
            momentum_update(self.key_text_encoder, self.text_encoder, m)
            key_captions = self.key_text_encoder(batch.captions, batch.caption_lengths)
        return key_images, key_captions

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``mini_batch`` (lambda * L_mini) and, when on, ``dvq`` and ``dtq``; the keys are enqueued after."""
        cfg = self.config
        images, captions = self.batch_embeddings(batch)
        # every rank enqueues the keys of the whole global batch, so the queues stay identical across ranks
        key_images, key_captions = (None if keys is None else gather_detached(keys) for keys in self._keys(batch))
        parts = uto_loss(images, captions, key_images=key_images, key_captions=key_captions,
                         image_queue=self.image_queue.snapshot() if cfg.dvq else None,
                         caption_queue=self.caption_queue.snapshot() if cfg.dtq else None,
                         gamma=cfg.gamma, margin=cfg.margin, mini_batch_weight=cfg.mini_batch_weight,
                         diagonal=cfg.diagonal, positive=cfg.positive, dvq=cfg.dvq, dtq=cfg.dtq)
        if cfg.dvq:
            self.image_queue.enqueue(key_images)
        if cfg.dtq:
            self.caption_queue.enqueue(key_captions)
        terms = ("mini_batch", *(name for name in ("dvq", "dtq") if getattr(cfg, name)))
        return {name: parts[name] for name in terms}

    def param_groups(self, lr: float) -> list[dict]:
        """Query encoders only (text non-pretrained and image at lr, BERT at lr * bert_lr_factor)."""
        return encoder_param_groups(lr, self.config.bert_lr_factor, self.text_encoder.tokens,
                                    [self.text_encoder.pool], [self.image_encoder])


@register_model("user", USERConfig)
def build_user(config: USERConfig, *, feature_dim: int, text: TextConfig, tokenizer) -> USERModel:
    tokens = build_token_encoder(text.encoder, tokenizer, config.embed_size, config.word_dim,
                                 packed_bert=text.packed_bert)
    return USERModel(config, feature_dim, tokens)


# Table IV (F30K 1K): rows II-VII (labels as in the paper's table) as switches of the USER model. Row I is
# VSE∞ itself (the released USER code has no triplet loss any more): the suite's ``vse`` preset.
ABLATION_ROWS: dict[str, list[str]] = {
    "II UTO": ["model.enhancement=none", "model.dvq=false", "model.dtq=false"],
    "III DVQ+UTO": ["model.enhancement=none", "model.dvq=true", "model.dtq=false"],
    "IV DTQ+UTO": ["model.enhancement=none", "model.dvq=false", "model.dtq=true"],
    "V GSE+UTO": ["model.enhancement=sge", "model.dvq=false", "model.dtq=false"],
    "VI DVQ+DTQ+UTO": ["model.enhancement=none", "model.dvq=true", "model.dtq=true"],
    "VII DVQ+DTQ+GSE+UTO": [],
}
