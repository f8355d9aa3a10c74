"""Which torch device a ``device`` setting means (``train.device``, ``--device``)."""

from __future__ import annotations

import torch

from itrlib.errors import ItrlibError


def resolve_device(spec: str = "auto", setting: str = "device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    ``setting`` names the option in the error raised when CUDA is asked for but absent.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ItrlibError(f"{setting}={spec!r} but CUDA is not available (use 'auto' or 'cpu')")
    return device
