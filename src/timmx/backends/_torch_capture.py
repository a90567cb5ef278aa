"""torch.export capture shared by the backends built on it (torch-export, onnx, executorch,
litert, tensorrt): the dynamic batch spec and its rules, and static image sizes."""

from __future__ import annotations

from timmx.core.options import option
from timmx.errors import ConfigurationError

MAX_DYNAMIC_BATCH = 1024


def dynamic_batch_option(help: str = "Symbolic batch size (needs --batch-size >= 2).") -> bool:
    """The ``--dynamic-batch`` field of a backend's options."""
    return option(False, help, "--dynamic-batch")


def batch_dim_spec(dynamic_batch: bool):
    """``dynamic_shapes`` for the single image input, positional (independent of arg names)."""
    if not dynamic_batch:
        return None
    import torch

    return ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},)


def export_program(prepared, *, dynamic_batch: bool = False, strict: bool = False):
    """Capture ``prepared`` with torch.export."""
    import torch

    return torch.export.export(
        prepared.module,
        (prepared.sample_input(),),
        dynamic_shapes=batch_dim_spec(dynamic_batch),
        strict=strict,
    )


def validate_dynamic_batch(job) -> None:
    """torch.export captures a symbolic batch reliably only from a sample batch of 2 or more."""
    if getattr(job.options, "dynamic_batch", False) and job.common.batch_size < 2:
        raise ConfigurationError(
            "--dynamic-batch needs --batch-size >= 2 (a batch of 1 gets specialized by "
            "torch.export); add --batch-size 2."
        )


def static_image_size(module, input_size: tuple[int, ...]):
    """``module``, with ViT-style dynamic image size fixed to ``input_size`` (a copy if changed).

    timm models built with ``dynamic_img_size=True`` (e.g. ``test_vit``) resample their position
    embedding on every call with bicubic antialiasing, an op the converters cannot lower. For a
    fixed input size the resampled embedding is a constant: resample it once
    (``set_input_size``) and switch the dynamic path off. Outputs are unchanged.
    """
    import copy

    targets = [
        m
        for m in module.modules()
        if getattr(m, "dynamic_img_size", False)
        and hasattr(m, "set_input_size")
        and hasattr(getattr(m, "patch_embed", None), "flatten")
    ]
    if not targets:
        return module
    module = copy.deepcopy(module)
    for m in module.modules():
        if getattr(m, "dynamic_img_size", False) and hasattr(m, "set_input_size"):
            m.set_input_size(img_size=tuple(input_size[1:]))
            m.dynamic_img_size = False
            m.patch_embed.flatten = True
    return module.eval()


def to_nhwc(x):
    """(N, C, H, W) -> (N, H, W, C), contiguous."""
    return x.permute(0, 2, 3, 1).contiguous()


def torch_runner(module, device: str):
    """A function running a loaded torch module on numpy batches (numpy out)."""
    import torch

    def run(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run
