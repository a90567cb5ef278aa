"""The one PT2E post-training quantization loop (litert, executorch and tensorrt use it)."""

from __future__ import annotations

from collections.abc import Iterable

from timmx.errors import ConfigurationError


def pt2e_quantize(
    module,
    example,
    quantizer,
    batches: Iterable,
    *,
    dynamic_shapes=None,
    fold_quantize: bool = True,
):
    """Capture ``module`` with torch.export, observe ``batches`` and convert with ``quantizer``.

    ``batches`` are (N, C, H, W) tensors in the graph's input range (for dynamic quantization
    one example batch initializes the observers). Returns the converted GraphModule, with eval
    semantics (its ``training`` flag off).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(
        module, (example,), dynamic_shapes=dynamic_shapes, strict=False
    ).module()
    observed = prepare_pt2e(captured, quantizer)
    seen = 0
    with torch.no_grad():
        for batch in batches:
            observed(batch)
            seen += 1
    if not seen:
        raise ConfigurationError("int8 calibration got no batches; give calibration data.")
    quantized = convert_pt2e(observed, fold_quantize=fold_quantize)
    quantized.training = False  # the captured graph has eval semantics already
    return quantized
