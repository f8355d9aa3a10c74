"""Sizes of the embedded synthetic dataset (images per split) and its default region width: light to import
(the command line lists them in ``--help``); :mod:`itrlib.data.synth` writes the dataset."""

SIZES: dict[str, dict[str, int]] = {
    "smoke": {"train": 120, "dev": 40, "test": 40, "testall": 50},
    "small": {"train": 1000, "dev": 200, "test": 200, "testall": 500},
    "medium": {"train": 5000, "dev": 1000, "test": 1000, "testall": 5000},
}
DEFAULT_FEATURE_DIM = 2048
"""Region feature width, as the BUTD features of the real precomp data."""
