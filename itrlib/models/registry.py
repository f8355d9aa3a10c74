"""Model registry: ``model.name`` in a config -> (config dataclass, builder).

Each model module registers itself when imported (``import itrlib.models`` imports them all); the config
dataclass is also handed to :func:`itrlib.config.register_model_config`, so configs resolve their ``model``
section without importing any model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itrlib.config import model_config_class, register_model_config


@dataclass(frozen=True)
class ModelEntry:
    config_class: type
    build: Callable[..., Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_class: type) -> Callable:
    """Decorator for ``build(config, *, feature_dim, text, tokenizer) -> RetrievalModel``."""

    def decorator(build: Callable) -> Callable:
        _REGISTRY[name] = ModelEntry(config_class, build)
        register_model_config(name, config_class)
        return build

    return decorator


def registered_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(config: Any, **kwargs: Any):
    """Instantiate the model named by ``config.name`` (kwargs: feature_dim, text, tokenizer)."""
    model_config_class(config.name)  # ConfigError for a name nobody registered
    return _REGISTRY[config.name].build(config, **kwargs)
