"""Which torch device a ``device`` setting means (``train.device``, ``--device``)."""

from __future__ import annotations

import re

import torch

from itrlib.errors import ConfigError

DEVICE_FORMS = "auto, cpu, cuda or cuda:N (N the index of a GPU)"
"""The device settings the suite accepts."""


def resolve_device(spec: str = "auto", setting: str = "device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as ``torch.device`` reads them.

    ``setting`` names the option in the ConfigError raised for any other value, or when CUDA (or GPU ``N``)
    is asked for but absent.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(spec, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", spec):
        raise ConfigError(f"{setting}={spec!r} is not a device: use {DEVICE_FORMS}")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}={spec!r} but CUDA is not available on this machine (use auto or cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"{setting}={spec!r} but this machine has {count} CUDA device(s): "
                          f"use cuda:0 to cuda:{count - 1}, cuda or auto")
    return device
