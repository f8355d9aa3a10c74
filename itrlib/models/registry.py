"""Model registry: ``model.name`` in a config -> (config dataclass, builder)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itrlib.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    config_class: type
    build: Callable[..., Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_class: type) -> Callable:
    """Decorator for ``build(config, *, feature_dim, text, tokenizer) -> RetrievalModel``."""

    def decorator(build: Callable) -> Callable:
        _REGISTRY[name] = ModelEntry(config_class, build)
        return build

    return decorator


def registered_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def model_config_class(name: str) -> type:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model.name {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].config_class


def build_model(config: Any, **kwargs: Any):
    """Instantiate the model named by ``config.name`` (kwargs: feature_dim, text, tokenizer)."""
    model_config_class(config.name)
    return _REGISTRY[config.name].build(config, **kwargs)


def _ensure_loaded() -> None:
    import itrlib.models  # noqa: F401  (imports every model module, which registers itself)
