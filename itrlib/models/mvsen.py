"""MVSEN: multi-task visual-semantic embedding network (Qin et al.): a local-matching model.

image regions (B, K, D_img)                      -> memory-augmented encoder (shared) -> regions (B, K, d)
caption ids (B, L) -> frozen BERT (sum of last 4 layers) -> BiGRU (mean of directions, L2 per word)
                                                 -> memory-augmented encoder (shared) -> words (B, L, d)
score(image, caption) = the pairwise matching network of :mod:`itrlib.nn.mvsen_similarity_reasoning` with the
regions (code direction ``i2t``) or the words (``t2i``) as graph nodes: every pair goes through a network,
so evaluation scores blocks of images x captions in one pass each.

Training (eq. 18): L = L_r + delta * (gamma * L_m + (1 - gamma) * L_c), returned as three named losses
(``ranking``, ``text_matching`` = delta gamma L_m, ``classification`` = delta (1 - gamma) L_c):

- L_r: dynamic top-K hinge over the batch's B x B pair scores (eq. 12);
- L_m: text-text matching (eq. 13-15): the caption T and a positive caption T+ of the same image, each
  through its own BiGRU (one shared frozen BERT), a plain 4-head self-attention, a mean over the words and
  a linear projection; the dynamic top-K hinge on their B x B cosine matrix;
- L_c: multi-label noun classification (eq. 16-17) from the attended features of the score computation,
  against the image's ``{split}_label.txt`` row; BCE with logits, mean-reduced.

Defaults are the released code's (FlyCuteBird/MVSEN @ 802002c; behaviour matched, code written anew);
docs/PAPER_DIFFERENCES.md section 4 lists every departure from the paper and the switch that undoes it.
Both directions are separate models; their ensemble is a composite run (:mod:`itrlib.runs.composite`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from itrlib.config import TextConfig, check_bounds, check_choices
from itrlib.data.collate import Batch
from itrlib.data.side_inputs import SideInput, side_rows
from itrlib.errors import ConfigError
from itrlib.losses.dynamic_topk import NEGATIVES, dynamic_topk_hinge
from itrlib.models.base import Extras, RetrievalModel
from itrlib.models.registry import register_model
from itrlib.nn.distributed import (
    gather_batch,
    gather_columns,
    gather_detached,
    gather_padded,
    pad_to_common_width,
    rank,
)
from itrlib.nn.functional import length_mask
from itrlib.nn.mvsen_memory_attention import MemoryAttention, MemoryAugmentedEncoder
from itrlib.nn.mvsen_similarity_reasoning import PairFeatures, SimilarityGraph, block_scores, pairwise_scores
from itrlib.nn.padded import PaddedSet
from itrlib.nn.text_encoders import FrozenBertLayerSum, GRUWordFeatures

DIRECTIONS = {"i2t": "regions", "t2i": "words"}
"""Code direction -> graph nodes. The release's ``i2t`` builds one node per region, ``t2i`` one per word;
the paper's equations name them the other way round (docs/PAPER_DIFFERENCES.md section 4); Table 4 uses the
code names."""
LABEL_VIEWS = ("official", "paper")
POSITIVE_CAPTIONS = ("random", "next")
LABEL_INPUT = SideInput("label", how_to_build="python -m itrlib data labels --data-root {root} --top N, N = "
                                               "model.num_labels (1000 in the f30k/coco presets)",
                        width_key="model.num_labels")
"""``{split}_label.txt``: one line of 0/1 noun labels per image (``python -m itrlib data labels``)."""
PASS_MB = {"cpu": 32, "cuda": 1024}
"""Default ``score_pass_mb`` per device type (other devices: the CUDA value)."""
NOMINAL_NODES = 36
"""Nodes per pair assumed when a scoring pass is sized (the BUTD regions per image; captions are sorted by length
and each pass is cut to its longest caption, which is rarely longer)."""
SCORE_BLOCK_PAIRS = 1 << 18
"""Image x caption pairs per evaluation block: a block holds only encodings, :meth:`MVSENModel.score` cuts it
into passes of :meth:`MVSENModel.pairs_per_pass` pairs."""


@dataclass
class MVSENConfig:
    """MVSEN hyper-parameters (defaults: the released code at the paper's widths)."""

    name: str = "mvsen"
    direction: str = "t2i"
    """Graph nodes, in the release's naming: ``t2i`` one node per word, ``i2t`` one per region."""
    d_model: int = 1024
    """Width of the shared memory-augmented encoder (both modalities)."""
    heads: int = 8
    d_head: int = 64
    d_ff: int = 2048
    memory_slots: int = 100
    """Learnable memory slots of eq. 3-4 (release: m = 100; the paper leaves it open)."""
    memory_layers: int = 1
    dropout: float = 0.1
    bert_layers: int = 4
    """Word features = sum of the frozen encoder's last ``bert_layers`` hidden layers (release: 4)."""
    gru_hidden: int = 2048
    """BiGRU width on top of BERT (release: 2 * embed_size = 2048)."""
    sim_dim: int = 256
    """d_c of eq. 7 (release ``sim_dim``)."""
    score_hidden: int = 32
    """Hidden width of the scoring head, eq. 11 (release ``hid_dim``)."""
    gcn_layers: int = 3
    """Residual GCN layers, eq. 8-10 (release: 3, the paper's best in Fig. 2)."""
    attention_scale: float = 10.0
    """alpha of eq. 5, the inverse softmax temperature of the cross attention."""
    leaky_slope: float = 0.1
    margin: float = 0.2
    """lambda_1 of eq. 12."""
    negatives: str = "topk"
    """Negatives of the ranking loss: ``topk`` (dynamic top-K, eq. 12), ``hardest`` or ``all``."""
    text_matching: bool = True
    """Text-text matching task (Table 4 "M")."""
    classification: bool = True
    """Multi-label classification task (Table 4 "C")."""
    delta: float = 0.01
    """delta of eq. 18 (release ``alpha``): weight of the two auxiliary tasks."""
    gamma: float = 0.1
    """gamma of eq. 18 (release ``gama``): text matching gets gamma, classification 1 - gamma."""
    beta: float = 0.99
    """beta of eq. 16 (release ``belt``)."""
    label_view: str = "official"
    """Classifier input. ``official`` (release): beta * (words attended at the regions) + (1 - beta) *
    (regions attended at the words), each averaged over every image of the batch; ``paper`` (eq. 16):
    (1 - beta) * the first + beta * the second, for the matched pair only."""
    num_labels: int = 1000
    """Width of ``{split}_label.txt`` (release: 1000 nouns)."""
    text_heads: int = 4
    """Heads of the text-text matching self-attention, each ``gru_hidden`` wide (release: 4 x 2048)."""
    text_proj: int | None = None
    """Projection before the text-text cosine (``None``: gru_hidden // 4, the release's 2048 -> 512)."""
    text_margin: float = 0.2
    """Margin of the text-text hinge (release: ``opt.margin`` = 0.2; the paper's lambda_2 = 0.1)."""
    positive_caption: str = "random"
    """T+ of the text-text task: ``random`` (another caption of the image, redrawn each epoch) or ``next``
    (caption (c + 1) mod 5 of the image, fixed; the release reads an unpublished precomputed choice)."""
    official_padding: bool = False
    """Reproduce the release's padding: BERT attends [PAD], the memory encoder's mask is the ineffective
    ``sum == 0`` test, and the text-text task attends and averages over padded positions. Default: masked."""
    score_pass_mb: int | None = None
    """Size of one scoring pass at evaluation, in MB of (pairs, nodes, d_model) float32 features; it sets
    how many image x caption pairs go through the network at once. ``None``: 32 on a CPU (passes that stay
    in cache were fastest on 2 cores; see ``make bench``) and 1024 on CUDA."""

    def validate(self) -> None:
        check_choices("model", {"direction": (self.direction, tuple(DIRECTIONS)),
                                "negatives": (self.negatives, NEGATIVES), "label_view": (self.label_view, LABEL_VIEWS),
                                "positive_caption": (self.positive_caption, POSITIVE_CAPTIONS)})
        check_bounds("model", self, ("d_model", "heads", "d_head", "d_ff", "memory_layers", "bert_layers",
                                     "gru_hidden", "sim_dim", "score_hidden", "num_labels", "text_heads"), 1)
        check_bounds("model", self, ("score_pass_mb", "text_proj"), 1, optional=True)
        check_bounds("model", self, ("memory_slots", "gcn_layers", "delta", "margin", "text_margin"), 0)
        check_bounds("model", self, ("gamma", "beta"), 0, 1)
        check_bounds("model", self, ("dropout",), 0, 1, high_open=True)
        if self.text_matching and self.text_proj is None and self.gru_hidden < 4:
            raise ConfigError(f"model.gru_hidden must be >= 4 when model.text_proj is null (the text-text projection "
                              f"is gru_hidden // 4 wide), got {self.gru_hidden}")

    @property
    def nodes(self) -> str:
        return DIRECTIONS[self.direction]


class TextMatchingHead(nn.Module):
    """Eq. 13-15 after the BiGRUs: self-attention, mean over words, projection, for T and T+ (own weights)."""

    def __init__(self, width: int, heads: int, proj: int, masked: bool):
        super().__init__()
        self.masked = masked
        # plain multi-head attention (no memory slots), each head as wide as the words, as the release
        self.attention = MemoryAttention(width, heads, width, slots=0)
        self.positive_attention = MemoryAttention(width, heads, width, slots=0)
        self.project = nn.Linear(width, proj)
        self.positive_project = nn.Linear(width, proj)
        bound = (6.0 / (width + proj)) ** 0.5
        for layer in (self.project, self.positive_project):
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)

    def _summary(self, attention: MemoryAttention, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.masked:  # the release: every padded position attends and is averaged
            return attention(words, None).mean(1)
        valid = length_mask(lengths, words.shape[1])
        out = attention(words, valid) * valid[..., None]
        return out.sum(1) / lengths[:, None].to(out.dtype)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, positive: torch.Tensor,
                positive_lengths: torch.Tensor) -> torch.Tensor:
        """BiGRU word features of T (B, L, H) and T+ (B, L+, H) -> cosine matrix (B, B): rows T+, columns T."""
        return self.cosines(*self.summaries(words, lengths, positive, positive_lengths))

    def summaries(self, words: torch.Tensor, lengths: torch.Tensor, positive: torch.Tensor,
                  positive_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence summaries (before projection) of T+ (B, H) and of T (B, H), one per caption."""
        return (self._summary(self.positive_attention, positive, positive_lengths),
                self._summary(self.attention, words, lengths))

    def cosines(self, positive: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Sentence summaries of T+ (B, H) and T (B, H) -> projected cosine matrix (B, B), rows T+."""
        t_pos, t = self.positive_project(positive), self.project(words)
        return F.cosine_similarity(t_pos[:, None, :], t[None, :, :], dim=-1)


class LabelClassifier(nn.Module):
    """Eq. 16's head: weight-normed Linear(d -> N) then Linear(N -> N), no nonlinearity (as the release)."""

    def __init__(self, dim: int, num_labels: int):
        super().__init__()
        self.hidden = weight_norm(nn.Linear(dim, num_labels))
        self.out = weight_norm(nn.Linear(num_labels, num_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))


class MVSENModel(RetrievalModel):
    """One direction of MVSEN (the other direction is another run; the ensemble is a composite run)."""

    def __init__(self, config: MVSENConfig, feature_dim: int, bert_path: str, pad_id: int,
                 packed_bert: bool = True):
        super().__init__()
        self.config = config
        self.side_inputs = (replace(LABEL_INPUT, width=config.num_labels),) if config.classification else ()
        self.positive_caption = config.positive_caption if config.text_matching else None
        key_padding = "official" if config.official_padding else "lengths"
        self.bert = FrozenBertLayerSum(bert_path, config.bert_layers, pad_id,
                                       attention_mask=not config.official_padding, packed=packed_bert)
        self.words = GRUWordFeatures(self.bert.out_dim, config.gru_hidden)
        self.encoder = MemoryAugmentedEncoder(
            feature_dim, config.d_model, config.heads, config.d_head, config.d_ff, config.memory_slots,
            config.memory_layers, config.dropout, key_padding)
        # the word features enter the shared encoder, whose input layer is sized for the regions (the
        # release's BiGRU is 2048 wide, like the BUTD regions); any other width gets its own input layer
        self.word_input = None if config.gru_hidden == feature_dim else nn.Linear(config.gru_hidden, feature_dim)
        self.graph = SimilarityGraph(config.d_model, config.sim_dim, config.score_hidden, config.gcn_layers)
        if config.text_matching:
            self.positive_words = GRUWordFeatures(self.bert.out_dim, config.gru_hidden)
            self.text_matching = TextMatchingHead(config.gru_hidden, config.text_heads,
                                                  config.text_proj or config.gru_hidden // 4,
                                                  masked=not config.official_padding)
        if config.classification:
            self.classifier = LabelClassifier(config.d_model, config.num_labels)
        self.score_block_pairs = SCORE_BLOCK_PAIRS

    # -- encoders ----------------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None
                      ) -> PaddedSet:
        """(B, K, D_img), (B,) -> PaddedSet of (B, K, d_model) region features."""
        return PaddedSet(self.encoder(images, lengths), lengths)

    def word_features(self, captions: torch.Tensor, lengths: torch.Tensor, gru: nn.Module | None = None
                      ) -> torch.Tensor:
        """(B, L) ids -> (B, L, gru_hidden) BiGRU features (L2 per word, 0 at padding)."""
        return (gru or self.words)(self.bert(captions), lengths)

    def encode_captions(self, captions: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None
                        ) -> PaddedSet:
        """(B, L), (B,) -> PaddedSet of (B, L, d_model) word features."""
        return self._encode_words(self.word_features(captions, lengths), lengths)

    def _encode_words(self, words: torch.Tensor, lengths: torch.Tensor) -> PaddedSet:
        if self.word_input is not None:
            words = self.word_input(words)
        return PaddedSet(self.encoder(words, lengths), lengths)

    # -- scoring -----------------------------------------------------------------------------------------
    def score(self, img_emb: PaddedSet, cap_emb: PaddedSet) -> torch.Tensor:
        """(n_i, n_c) float32 pair scores, in passes of :meth:`pairs_per_pass` pairs (:func:`block_scores`)."""
        cfg = self.config
        with torch.autocast(device_type=img_emb.features.device.type, enabled=False):
            return block_scores(self.graph, img_emb, cap_emb, cfg.nodes, cfg.attention_scale, cfg.leaky_slope,
                                self.pairs_per_pass(img_emb.features.device))

    def pairs_per_pass(self, device: torch.device) -> int:
        """Image x caption pairs per scoring pass on ``device`` (from ``score_pass_mb``)."""
        mb = self.config.score_pass_mb or PASS_MB.get(device.type, PASS_MB["cuda"])
        return max(1, mb * 2**20 // (4 * NOMINAL_NODES * self.config.d_model))

    # -- training ----------------------------------------------------------------------------------------
    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``ranking`` and, when on, ``text_matching`` (delta gamma L_m), ``classification``
        (delta (1 - gamma) L_c).

        Under torch.distributed each rank scores every image of the global batch against its own captions
        only (its columns of the score matrix, :func:`~itrlib.nn.distributed.gather_columns`), and summarises
        and labels its own captions before their rows are gathered: the pairwise network's work is shared
        between the ranks, and every rank still computes the global batch's losses."""
        cfg = self.config
        images = _gathered(self.encode_images(batch.images, batch.image_lengths))
        words = self.word_features(batch.captions, batch.caption_lengths)
        captions = self._encode_words(words, batch.caption_lengths)
        scores, features = pairwise_scores(self.graph, images, captions, cfg.nodes, cfg.attention_scale,
                                           cfg.leaky_slope, features=cfg.classification)
        losses = {"ranking": dynamic_topk_hinge(gather_columns(scores), cfg.margin, cfg.negatives)}
        if cfg.text_matching:
            if batch.positive_captions is None:
                raise ValueError("MVSEN's text matching needs Batch.positive_captions (PairDataset positive=...)")
            positive = self.word_features(batch.positive_captions, batch.positive_lengths, self.positive_words)
            # padded as the gathered batch would be: the release's unmasked summary averages the padding too
            summaries = self.text_matching.summaries(pad_to_common_width(words), batch.caption_lengths,
                                                     pad_to_common_width(positive), batch.positive_lengths)
            cosines = self.text_matching.cosines(*(gather_batch(summary) for summary in summaries))
            losses["text_matching"] = cfg.delta * cfg.gamma * dynamic_topk_hinge(cosines, cfg.text_margin, "topk")
        if cfg.classification:
            logits = gather_batch(self.classifier(self.label_input(features, rank() * len(captions))))
            labels = gather_detached(self._labels(batch.extras)).to(logits.dtype)
            losses["classification"] = (cfg.delta * (1 - cfg.gamma)
                                        * F.binary_cross_entropy_with_logits(logits, labels))
        return losses

    def label_input(self, features: PairFeatures, first_image: int = 0) -> torch.Tensor:
        """Per-pair attended means (B_img, B_cap, d) -> classifier input per caption (B_cap, d). Caption ``j``'s
        own image is image ``first_image + j`` (the paper's view reads that pair)."""
        beta = self.config.beta
        if self.config.label_view == "official":
            return beta * features.words_at_regions.mean(0) + (1 - beta) * features.regions_at_words.mean(0)
        n_cap = features.words_at_regions.shape[1]
        own = [view.narrow(0, first_image, n_cap).diagonal().T
               for view in (features.words_at_regions, features.regions_at_words)]
        return (1 - beta) * own[0] + beta * own[1]

    def _labels(self, extras: Extras) -> torch.Tensor:
        return side_rows(extras, LABEL_INPUT, self.config.num_labels,
                         "MVSEN's classification needs the {split}_label.txt rows of model.num_labels labels per "
                         "image (set model.num_labels to the file's width, or build the file: python -m itrlib "
                         "data labels)")

    def param_groups(self, lr: float) -> list[dict]:
        """Everything but the frozen BERT, at lr (the release's single Adam group)."""
        return [{"name": "mvsen", "lr": lr, "params": [p for p in self.parameters() if p.requires_grad]}]


def _gathered(embeddings: PaddedSet) -> PaddedSet:
    """This rank's padded sets -> those of the global batch, in rank order (itself in one process)."""
    return PaddedSet(*gather_padded(embeddings.features, embeddings.lengths))


@register_model("mvsen", MVSENConfig)
def build_mvsen(config: MVSENConfig, *, feature_dim: int, text: TextConfig, tokenizer) -> MVSENModel:
    if text.encoder != "bert":
        raise ConfigError("MVSEN's words come from a frozen BERT-family encoder: set text.encoder=bert")
    check_bert_layers(config, tokenizer.path)
    return MVSENModel(config, feature_dim, tokenizer.path, tokenizer.pad_id, text.packed_bert)


def check_bert_layers(config: MVSENConfig, folder: str | Path) -> None:
    """ConfigError unless ``model.bert_layers`` <= the depth of the text encoder in ``folder`` (read from its
    config.json, before any weight is loaded)."""
    from transformers import AutoConfig

    depth = AutoConfig.from_pretrained(str(folder), local_files_only=True).num_hidden_layers
    if config.bert_layers > depth:
        raise ConfigError(f"model.bert_layers={config.bert_layers} exceeds the depth of the text encoder in {folder} "
                          f"(text.bert_path): {depth} hidden layers, of which the word features sum the last "
                          f"model.bert_layers; set model.bert_layers <= {depth}")


# Table 4 (F30K 1K) rows as switches; "t2i+i2t" rows are composite runs of the two single-direction rows.
ABLATION_ROWS: dict[str, list[str]] = {
    "#1 R t2i": ["model.direction=t2i", "model.text_matching=false", "model.classification=false"],
    "#2 R i2t": ["model.direction=i2t", "model.text_matching=false", "model.classification=false"],
    "#4 R+M t2i": ["model.direction=t2i", "model.classification=false"],
    "#5 R+M i2t": ["model.direction=i2t", "model.classification=false"],
    "#7 R+C t2i": ["model.direction=t2i", "model.text_matching=false"],
    "#8 R+C i2t": ["model.direction=i2t", "model.text_matching=false"],
    "#10 R+M+C t2i": ["model.direction=t2i"],
    "#11 R+M+C i2t": ["model.direction=i2t"],
}
ENSEMBLE_ROWS: dict[str, tuple[str, str]] = {
    "#3 R t2i+i2t": ("#1 R t2i", "#2 R i2t"),
    "#6 R+M t2i+i2t": ("#4 R+M t2i", "#5 R+M i2t"),
    "#9 R+C t2i+i2t": ("#7 R+C t2i", "#8 R+C i2t"),
    "#12 R+M+C t2i+i2t": ("#10 R+M+C t2i", "#11 R+M+C i2t"),
}
