"""Building blocks shared by every paper: projections, pooling (GPO), token encoders."""
