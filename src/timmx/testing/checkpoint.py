"""A live-weights checkpoint for ``--checkpoint``, as the tests and benchmark scripts export it."""

from pathlib import Path


def save_live_checkpoint(model: str, folder: Path, **options) -> Path:
    """Save a state_dict of live weights for ``model`` into ``folder``; returns the file.

    The model is built by timmx's own factory with ``options`` (``num_classes``, ``in_chans``,
    ``input_size``: the export flags it will be loaded with), made live by
    :func:`timmx.testing.live_weights` on 32 real photos through its eval transform (grey photos
    and the averaged mean/std for one input channel), seeded, so the same call gives the same file.
    """
    import torch

    from timmx._torch_env import import_timm
    from timmx.core.job import CommonOptions
    from timmx.core.model import create_timm_model
    from timmx.testing.images import photo_batch
    from timmx.testing.live import live_weights

    torch.manual_seed(0)
    net = create_timm_model(model, CommonOptions(**options))
    config = import_timm().data.resolve_data_config({}, model=net)
    size = options.get("input_size") or tuple(int(v) for v in config["input_size"])
    if options.get("in_chans"):
        size = (options["in_chans"], *size[1:])
    if size[0] == 1:
        mean, std = config["mean"], config["std"]
        config = {**config, "mean": (sum(mean) / 3,), "std": (sum(std) / 3,)}
    live_weights(net, images=photo_batch(tuple(size), config, 32))
    path = Path(folder) / f"{model}.pth"
    torch.save(net.state_dict(), path)
    return path
