"""Retrieval models, one paper per module, all meeting :class:`itrlib.models.base.RetrievalModel`."""

from itrlib.config import model_config_class
from itrlib.models import afa as _afa  # noqa: F401  (registers "afa")
from itrlib.models import mvsen as _mvsen  # noqa: F401  (registers "mvsen")
from itrlib.models import user as _user  # noqa: F401  (registers "user")
from itrlib.models import vse as _vse  # noqa: F401  (registers "vse")
from itrlib.models.base import RetrievalModel
from itrlib.models.registry import build_model, registered_models

__all__ = ["RetrievalModel", "build_model", "model_config_class", "registered_models"]
