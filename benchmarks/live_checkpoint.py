"""Live weights for the benchmark scripts, built as the tests build theirs
(:func:`timmx.testing.checkpoint.save_live_checkpoint`)."""

from pathlib import Path


def live_checkpoint(model: str, folder: Path, **options) -> Path:
    """Save a state_dict of live weights for ``model`` (as timmx builds it with ``options``:
    num_classes, in_chans, input_size) into ``folder``; returns the file."""
    from timmx.testing.checkpoint import save_live_checkpoint

    return save_live_checkpoint(model, folder, **options)
