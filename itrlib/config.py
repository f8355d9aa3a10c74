"""Typed run configuration: dataclasses, YAML presets and ``key=value`` overrides.

A run is described by :class:`RunConfig`. Every field has a documented default; a key that is not a
field is an error (with the closest valid names suggested), and values are checked against the field's
type (a number must be finite: NaN and inf are refused for every float field) and against its range by the
section's ``validate`` (:func:`check_bounds`). The ``model`` section is model-specific: its dataclass is looked
up by ``model.name`` in :data:`MODEL_CONFIGS`, which the model registry fills when a model module is imported
(``import itrlib.models`` registers every model), so each paper adds its own fields without touching this module
and this module imports no model.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from itrlib.errors import ConfigError


@dataclass
class DataConfig:
    """Where the precomp features live and how batches are drawn from them."""

    root: str = "data/synthetic"
    """Folder holding ``{split}_ims.npy``, ``{split}_caps.txt``, ``{split}_ids.txt`` (or its ``precomp/``)."""
    train_split: str = "train"
    val_split: str = "dev"
    val_max_images: int | None = 1000
    """Validation uses the first 1000 dev images / 5000 captions, as every official loader does."""
    region_keep_prob: float = 0.8
    """VSE∞ train-time region dropout: each region is kept with this probability."""
    caption_augment: bool = True
    """VSE∞ train-time word masking / replacement / deletion (BERT path)."""
    check_features: str = "sample"
    """NaN/inf scan when a split is opened: ``full``, ``sample`` or ``none`` (items are always checked).
    Unless ``none``, training also scans every train and dev feature once per file version (cached)."""
    num_workers: int = 0

    def validate(self) -> None:
        check_bounds("data", self, ("val_max_images",), 1, optional=True)
        check_bounds("data", self, ("region_keep_prob",), 0, 1, low_open=True)
        _one_of("data.check_features", self.check_features, CHECK_FEATURES)
        check_bounds("data", self, ("num_workers",), 0)


@dataclass
class TextConfig:
    """Text encoder input: BERT WordPiece (paper setting) or a BiGRU vocabulary."""

    encoder: str = "bert"
    """``bert`` (a local Hugging Face BERT-family folder) or ``bigru``."""
    bert_path: str = "minilm"
    """``minilm`` (the packaged all-MiniLM-L6-v2), a local folder, or a hub name present in the local cache."""
    vocab_min_count: int = 1
    """BiGRU vocabulary: minimum count of a word in the training captions."""
    packed_bert: bool = True
    """Run a ``BertModel`` on the captions' valid tokens only (padding removed from its linear layers): the
    same features at valid positions up to float rounding, in a fraction of the time when captions' lengths
    vary. ``false``: Hugging Face's padded forward, as the authors' code runs it."""

    def validate(self) -> None:
        _one_of("text.encoder", self.encoder, TEXT_ENCODERS)
        check_bounds("text", self, ("vocab_min_count",), 1)


@dataclass
class TrainConfig:
    """Optimisation and the training loop (defaults: VSE∞ ``train_region.sh``)."""

    epochs: int = 25
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 1e-4
    lr_decay_epochs: list[int] = field(default_factory=lambda: [15])
    """Multiply every learning rate by ``lr_decay_factor`` at the start of these epochs."""
    lr_decay_factor: float = 0.1
    grad_clip: float = 2.0
    """Max global gradient norm (``0`` disables clipping)."""
    amp: bool = True
    """Mixed precision (bf16 autocast) on CUDA; ignored on CPU."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    log_every: int = 10
    checkpoint_every: int = 0
    """Also checkpoint every N optimiser steps within an epoch (``0``: only at epoch ends)."""
    keep_last: bool = True
    """Keep ``last.pt`` (model, optimiser and RNG state: about 3x the model with Adam) once the run has
    finished, so that raising ``train.epochs`` continues it. ``False`` deletes it after the last epoch
    (``best.pt``, the metrics and the summary stay; the finished run is still reused, not continued):
    for sweeps and smoke runs, where a BERT-base ``last.pt`` of 1.3 GB per run adds up."""
    eval_batch_size: int = 256
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Weight of each named loss the model returns (missing names weigh 1.0)."""
    max_steps_per_epoch: int | None = None
    """Cap the optimiser steps per epoch (smoke runs); ``None`` uses every batch."""
    adamw: str = "fused"
    """AdamW kernel, the same update either way (equal up to float rounding, so a switch moves the numbers):
    ``fused`` (one fused kernel, several times faster than ``foreach`` on CPU) or ``foreach`` (one multi-tensor
    update; the suite's runs before 2026-12-03). A run resumes under either (``RESUME_ALLOWED_DIFFERENCES``)."""

    def validate(self) -> None:
        _one_of("train.adamw", self.adamw, ADAMW_KERNELS)
        check_bounds("train", self, ("epochs", "batch_size", "log_every", "eval_batch_size"), 1)
        check_bounds("train", self, ("lr", "lr_decay_factor"), 0, low_open=True)
        check_bounds("train", self, ("weight_decay", "grad_clip", "checkpoint_every", "seed"), 0)
        check_bounds("train", self, ("max_steps_per_epoch",), 1, optional=True)
        for i, epoch in enumerate(self.lr_decay_epochs):
            _in_bounds(f"train.lr_decay_epochs[{i}]", epoch, 0)
        for name, weight in self.loss_weights.items():
            _in_bounds(f"train.loss_weights.{name}", weight, 0)
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"train.device must be one of auto, cpu, cuda, cuda:N (N = 0, 1, ...), "
                              f"got {self.device!r}")


@dataclass
class EvalConfig:
    """Evaluation (per-epoch validation and ``eval``): scoring budget, tie rule, saved score matrices."""

    max_pairs_per_block: int | None = None
    """Image-caption pairs scored per block (a memory budget); ``None``: the model's ``score_block_pairs``
    (global models 2^25 = a 128 MiB float32 block; pairwise models less)."""
    ties: str = "pessimistic"
    """``pessimistic``: a ground truth tied with another item ranks after it; ``stable``: the official code
    under a stable sort (among equal scores the higher index ranks first). Eval JSONs count tied queries."""
    save_scores: str = "none"
    """Save each evaluated split's score matrix as ``scores-<split>.npy`` in the run folder: ``none``,
    ``float32`` or ``float16`` (half the disk, e.g. 250 MB for COCO 5K; ranks of a float16 copy can tie)."""

    def validate(self) -> None:
        check_bounds("eval", self, ("max_pairs_per_block",), 1, optional=True)
        _one_of("eval.ties", self.ties, TIE_RULES)
        _one_of("eval.save_scores", self.save_scores, SCORE_DTYPES)


@dataclass
class RunConfig:
    """Everything a run needs; saved resolved as ``config.yaml`` in the run folder."""

    name: str = "run"
    output_dir: str = "outputs/runs"
    model: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


SECTIONS = {"data": DataConfig, "text": TextConfig, "train": TrainConfig, "eval": EvalConfig}
MODEL_CONFIGS: dict[str, type] = {}
"""``model.name`` -> the model's config dataclass, filled by :func:`register_model_config` (called by
:func:`itrlib.models.registry.register_model`)."""
CHECK_FEATURES = ("full", "sample", "none")
TEXT_ENCODERS = ("bert", "bigru")
ADAMW_KERNELS = ("foreach", "fused")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
TIE_RULES = ("pessimistic", "stable")
"""``pessimistic``: a ground truth tied with another item ranks after it (default, never flatters a model);
``stable``: the official code under a stable sort (among equal scores the higher index ranks first)."""
SCORE_DTYPES = ("none", "float32", "float16")


def preset_path(name: str) -> Path:
    """Path of a packaged preset (``itrlib/configs/<name>.yaml``); a path to a YAML file is returned as is."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    packaged = resources.files("itrlib") / "configs" / f"{name}.yaml"
    if not packaged.is_file():
        raise ConfigError(f"no config file {name!r} and no packaged preset of that name; presets: "
                          f"{', '.join(list_presets())}")
    return Path(str(packaged))


def list_presets() -> list[str]:
    folder = resources.files("itrlib") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(source: str | Path | dict, overrides: list[str] | dict | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from a preset name, a YAML path or a dict, then apply overrides.

    Overrides are ``"section.key=value"`` strings (values parsed as YAML) or a nested/dotted dict.
    """
    raw = dict(source) if isinstance(source, dict) else _read_yaml(preset_path(str(source)))
    raw = _resolve_base(raw)
    for key, value in _parse_overrides(overrides).items():
        _set_dotted(raw, key, value)
    return from_dict(raw)


def register_model_config(name: str, config_class: type) -> None:
    """Make ``model.name: <name>`` build ``config_class`` (the model registry calls this for each model)."""
    MODEL_CONFIGS[name] = config_class


def model_config_class(name: str) -> type:
    """The config dataclass registered for ``model.name`` (ConfigError naming the registered ones)."""
    if not MODEL_CONFIGS:
        raise ConfigError(f"model.name {name!r}: no model is registered yet; import itrlib.models (it registers "
                          "every model) before loading a config")
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model.name {name!r}; registered models: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[name]


def from_dict(raw: dict) -> RunConfig:
    """Validate a nested dict against the dataclasses (unknown keys and wrong types are errors)."""
    raw = dict(raw)
    model_raw = dict(raw.pop("model", None) or {})
    if "name" not in model_raw:
        raise ConfigError("model.name is required (e.g. model.name=vse)")
    model_cls = model_config_class(model_raw["name"])
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(RunConfig)
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(_unknown(key, list(hints), "top-level"))
        if key in SECTIONS:
            kwargs[key] = _build(SECTIONS[key], value or {}, key)
        else:
            kwargs[key] = _coerce(value, hints[key], key)
    kwargs["model"] = _build(model_cls, model_raw, "model")
    config = RunConfig(**kwargs)
    # a model config may check fields across sections (USER: model.queue_size against train.batch_size)
    check_run = getattr(config.model, "check_run", None)
    if check_run is not None:
        check_run(config)
    return config


def to_dict(config: RunConfig) -> dict:
    """Plain nested dict (YAML-serialisable) of a resolved config."""
    return dataclasses.asdict(config)


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def config_differences(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old value, new value) for every field that differs (a missing field counts as None)."""
    flat_old: dict[str, Any] = {}
    flat_new: dict[str, Any] = {}
    _flatten(to_dict(old), "", flat_old)
    _flatten(to_dict(new), "", flat_new)
    return {key: (flat_old.get(key), flat_new.get(key)) for key in sorted(flat_old.keys() | flat_new.keys())
            if flat_old.get(key) != flat_new.get(key)}


# ----------------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


def _resolve_base(raw: dict) -> dict:
    """``base: <preset>`` merges this dict over another preset (recursively).

    The ``model`` section is inherited only from a base of the same ``model.name``: a preset of another
    model starts from that model's own defaults, never from the fields of the base's model.
    """
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _resolve_base(_read_yaml(preset_path(base)))
    model, base_model = raw.get("model") or {}, merged.get("model") or {}
    if "name" in model and model["name"] != base_model.get("name"):
        merged.pop("model", None)
    _deep_update(merged, raw)
    return merged


def _deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _parse_overrides(overrides: list[str] | dict | None) -> dict[str, Any]:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        flat: dict[str, Any] = {}
        _flatten(overrides, "", flat)
        return flat
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, text = item.split("=", 1)
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
    return parsed


def _flatten(tree: dict, prefix: str, out: dict) -> None:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and key in (*SECTIONS, "model"):
            _flatten(value, dotted + ".", out)
        else:
            out[dotted] = value


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(_unknown(key, names, where))
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def check_bounds(section: str, values: object, keys: Sequence[str], low: float, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """ConfigError naming the first attribute of ``keys`` of ``values`` (a config section) that lies outside
    [low, high] (``low_open``/``high_open``: that end excluded; ``high=None``: no upper end); ``None`` passes
    when ``optional``."""
    for key in keys:
        _in_bounds(f"{section}.{key}", getattr(values, key), low, high, low_open=low_open, high_open=high_open,
                   optional=optional)


def _in_bounds(where: str, value: float | None, low: float, high: float | None = None, *, low_open: bool = False,
               high_open: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    inside = value is not None and (value > low if low_open else value >= low) and (
        high is None or (value < high if high_open else value <= high))  # comparisons also reject NaN
    if not inside:
        if high is None:
            bound = f"{'>' if low_open else '>='} {low}"
        else:
            bound = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{where} must be {bound}{' or null' if optional else ''}, got {value!r}")


def _one_of(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")


def check_choices(section: str, choices: dict[str, tuple[str, Sequence[str]]]) -> None:
    """ConfigError unless each ``{key: (value, allowed)}`` of ``section`` holds an allowed value."""
    for key, (value, allowed) in choices.items():
        _one_of(f"{section}.{key}", value, tuple(allowed))


def _finite_float(value: Any, where: str) -> float:
    """A number (an int, or a string YAML 1.1 left unparsed such as "1e-3") as a finite float."""
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return number


def _unknown(key: str, valid: list[str], where: str) -> str:
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown config key {key!r} in {where}{hint} (valid: {', '.join(valid)})"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, converting int->float and lists as needed."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is float:
        return _finite_float(value, where)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value
