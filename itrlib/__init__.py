"""itrlib: a reproducibility suite for image-text retrieval (VSE-infinity baseline, AFA, USER, MVSEN)."""

__version__ = "0.1.0"
