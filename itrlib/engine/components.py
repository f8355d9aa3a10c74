"""Build the pieces of a run from its config: device, tokenizer, splits, side inputs, model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from itrlib.config import RunConfig, TextConfig, TrainConfig, load_config
from itrlib.data.precomp import PrecompSplit, open_split
from itrlib.data.text import BertWordPieceTokenizer, Tokenizer, Vocabulary, resolve_bert_path
from itrlib.devices import resolve_device
from itrlib.engine.checkpoint import BEST, LAST, load_checkpoint
from itrlib.engine.run_folder import check_same_run, load_model_state, stored_config
from itrlib.errors import ConfigError, ItrlibError
from itrlib.models import build_model
from itrlib.models.base import RetrievalModel

VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.yaml"


def build_tokenizer(text: TextConfig, run_dir: Path, train_captions: list[str] | None = None) -> Tokenizer:
    """BERT WordPiece from a local folder, or a BiGRU vocabulary built once and saved in the run folder."""
    if text.encoder == "bert":
        return BertWordPieceTokenizer(resolve_bert_path(text.bert_path))
    if text.encoder != "bigru":
        raise ItrlibError(f"unknown text.encoder {text.encoder!r} (expected 'bert' or 'bigru')")
    vocab_path = run_dir / VOCAB_FILE
    if vocab_path.is_file():
        return Vocabulary.load(vocab_path)
    if train_captions is None:
        raise ItrlibError(f"{vocab_path} is missing: the BiGRU vocabulary is built by training")
    vocab = Vocabulary.build(train_captions, min_count=text.vocab_min_count)
    vocab.save(vocab_path)
    return vocab


def create_model(config: RunConfig, feature_dim: int, tokenizer: Tokenizer) -> RetrievalModel:
    return build_model(config.model, feature_dim=feature_dim, text=config.text, tokenizer=tokenizer)


def create_optimizer(model: RetrievalModel, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``model.param_groups(train.lr)`` with the ``train.adamw`` kernel; each group keeps its
    starting learning rate as ``base_lr`` (the step decay multiplies it)."""
    groups = model.param_groups(train.lr)
    for group in groups:
        group["base_lr"] = group["lr"]
    kernel = {train.adamw: True}  # foreach=True or fused=True
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay, **kernel)


@dataclass
class LoadedRun:
    """A trained model ready for evaluation, with what is needed to feed it."""

    config: RunConfig
    model: RetrievalModel
    tokenizer: Tokenizer
    device: torch.device
    checkpoint: dict


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The ``config.yaml`` of a run folder; ItrlibError when the folder has none."""
    config_path = Path(run_dir) / CONFIG_FILE
    if not config_path.is_file():
        raise ItrlibError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    return load_config(config_path)


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> LoadedRun:
    """Rebuild the model of a run folder from ``config.yaml`` and a checkpoint (``best`` or ``last``)."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    config = load_run_config(run_dir)
    names = {"best": BEST, "last": LAST}
    if checkpoint not in names:
        raise ItrlibError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    path = run_dir / names[checkpoint]
    state = load_checkpoint(path)
    check_same_run(stored_config(state.get("config"), path), config, path,
                   f"it does not belong with {config_path}")
    tokenizer = build_tokenizer(config.text, run_dir)
    model = create_model(config, int(state["feature_dim"]), tokenizer)
    load_model_state(model, state, path, config, int(state["feature_dim"]))
    target = resolve_device(device, "--device")
    model.to(target).eval()
    return LoadedRun(config, model, tokenizer, target, state)


def open_train_split(config: RunConfig) -> PrecompSplit:
    return open_split(config.data.root, config.data.train_split, check_features=config.data.check_features)


def open_val_split(config: RunConfig) -> PrecompSplit:
    return open_split(config.data.root, config.data.val_split, max_images=config.data.val_max_images,
                      check_features=config.data.check_features)


def check_splits(config: RunConfig, train_split: PrecompSplit, val_split: PrecompSplit) -> None:
    """ConfigError, before training, when the config cannot run on these splits: ``train.batch_size`` above the
    training pairs, or a model field the data contradicts (the model config's ``check_training(run, splits)``,
    e.g. USER's ``model.num_slots`` against the regions per image)."""
    pairs = train_split.n_captions
    if config.train.batch_size > pairs:
        raise ConfigError(f"train.batch_size={config.train.batch_size} exceeds the {pairs} training pairs (captions) "
                          f"of split {train_split.split!r} in {train_split.root}: every step takes a full batch and "
                          f"an epoch drops its last incomplete one (as VSE∞), so not one step could run; "
                          f"set train.batch_size <= {pairs}")
    check_training = getattr(config.model, "check_training", None)
    if check_training is not None:
        check_training(config, (train_split, val_split))
