"""Evidence helpers for timmx's tests and benchmarks (and anyone checking an exporter).

- :func:`real_photos`: photographs shipped inside scikit-image and scikit-learn (no download).
- :func:`live_weights`: turns a timm model's random init into weights where every branch
  computes something and logits land in a realistic range (see :mod:`timmx.testing.live`).
- :func:`residual_ratios`: at every residual add, the smaller operand's norm over the larger.
- :func:`save_live_checkpoint`: a live-weights state_dict file for ``--checkpoint``.
- :func:`write_photo_folder`: the photos as a folder for ``--verify-data``/``--calibration-data``.
- :mod:`timmx.testing.digits`: a small timm model trained on scikit-learn's handwritten digits.

These need scikit-image and scikit-learn (timmx's dev dependencies).
"""

from timmx.testing.checkpoint import save_live_checkpoint
from timmx.testing.images import real_photos, write_photo_folder
from timmx.testing.live import live_weights, residual_ratios

__all__ = [
    "live_weights",
    "real_photos",
    "residual_ratios",
    "save_live_checkpoint",
    "write_photo_folder",
]
