"""itrlib: a reproducibility suite for image-text retrieval (VSE∞ baseline, AFA, USER, MVSEN)."""

__version__ = "0.1.0"
