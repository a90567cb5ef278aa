"""Export-time module swaps shared by backends: a copy of the model whose chosen timm layers
run a numerically equivalent forward written in ops a converter can lower.

A swap replaces a method on the layers of a deep copy (never on the user's model), so the
converter traces the rewritten ops while verification compares the artifact with the original.
"""

from __future__ import annotations

from collections.abc import Callable

Swaps = dict[type, tuple[str, Callable]]


def resolve_swaps(wanted: dict[tuple[str, str], Callable | tuple[str, Callable]]) -> Swaps:
    """``{(module, class name): forward or (method name, function)}`` -> ``{class: (method,
    function)}``; classes this timm lacks are skipped."""
    import importlib

    from timmx._torch_env import import_timm

    import_timm()
    found: Swaps = {}
    for (module_name, class_name), forward in wanted.items():
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        found[cls] = forward if isinstance(forward, tuple) else ("forward", forward)
    return found


def swapped(module, swaps: Swaps, example=None):
    """``module``, or a deep copy whose layers of the types in ``swaps`` run the given methods;
    and how many layers were swapped. With ``example``, the copy runs once so that constants
    the new forwards cache exist before tracing."""
    import copy
    import types

    import torch

    if not any(type(m) in swaps for m in module.modules()):
        return module, 0
    module = copy.deepcopy(module)
    count = 0
    for layer in module.modules():
        found = swaps.get(type(layer))
        if found is not None:
            name, function = found
            setattr(layer, name, types.MethodType(function, layer))
            count += 1
    if example is not None:
        with torch.no_grad():
            module(example)
    return module, count


def decomposed_grn(self, x):
    """ConvNeXt-V2's GlobalResponseNorm without ``torch.norm`` over two axes and ``addcmul``
    (Core ML has no addcmul; pnnx leaves both in an expression ncnn cannot run): the L2 norm
    as sqrt(sum(x * x)), then x + bias + weight * (x * x_n)."""
    x_g = (x * x).sum(dim=self.spatial_dim, keepdim=True).sqrt()
    x_n = x_g / (x_g.mean(dim=self.channel_dim, keepdim=True) + self.eps)
    return x + (self.bias.view(self.wb_shape) + self.weight.view(self.wb_shape) * (x * x_n))


def decomposition_swaps() -> Swaps:
    """Swaps that only spell an op out in simpler ones (for every converter that needs it)."""
    return resolve_swaps({("timm.layers.grn", "GlobalResponseNorm"): decomposed_grn})
