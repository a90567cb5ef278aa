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


def _mix_heads(conv, attn):
    """A 1x1 Conv2d over the heads of ``attn`` (B, heads, N, N) as a matrix product."""
    import torch

    weight = conv.weight[:, :, 0, 0]
    mixed = torch.einsum("oh,bhnm->bonm", weight, attn)
    return mixed if conv.bias is None else mixed + conv.bias.view(1, -1, 1, 1)


def attention2d_heads_as_matmul(self, x):
    """EfficientFormer-V2's Attention2d (timm 1.0) with its talking heads (1x1 convs over the
    heads) as matrix products. ExecuTorch's XNNPACK delegate lays a conv's output out channels-
    last and then runs the softmax over the wrong axis (a 1x1 conv then softmax(-1): max abs
    error 0.59; efficientformerv2_s0 cosine -0.12)."""
    b, _c, _h, _w = x.shape
    if self.stride_conv is not None:
        x = self.stride_conv(x)
    q = self.q(x).reshape(b, self.num_heads, -1, self.N).permute(0, 1, 3, 2)
    k = self.k(x).reshape(b, self.num_heads, -1, self.N).permute(0, 1, 2, 3)
    v = self.v(x)
    v_local = self.v_local(v)
    v = v.reshape(b, self.num_heads, -1, self.N).permute(0, 1, 3, 2)
    attn = (q @ k) * self.scale
    attn = attn + self.get_attention_biases(x.device)
    attn = _mix_heads(self.talking_head1, attn).softmax(dim=-1)
    attn = _mix_heads(self.talking_head2, attn)
    x = (attn @ v).transpose(2, 3)
    x = x.reshape(b, self.dh, self.resolution[0], self.resolution[1]) + v_local
    if self.upsample is not None:
        x = self.upsample(x)
    return self.proj(self.act(x))


def head_mixing_swaps() -> Swaps:
    """Swaps that keep a convolution away from the softmax that follows it (ExecuTorch)."""
    return resolve_swaps(
        {("timm.models.efficientformer_v2", "Attention2d"): attention2d_heads_as_matmul}
    )
