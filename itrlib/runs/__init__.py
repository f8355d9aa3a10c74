"""Run folders: trained runs, composite runs (weighted sums of trained runs' scores), saved score matrices and
the converter of the authors' official checkpoints. :mod:`itrlib.runs.any_run` decides which kind a folder holds."""
