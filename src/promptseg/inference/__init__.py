"""Inference: the Predictor, the tile-embedding cache, decoding and 3-D volumes; nothing from training."""
