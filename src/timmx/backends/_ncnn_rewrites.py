"""ncnn: timm layers rewritten, on a copy of the model traced for pnnx, into ops pnnx can lower
to ncnn layers (at most 4-D tensors, a batch of one), each numerically the same computation.

timm's attention splits its fused qkv projection with a 5-D reshape,
``qkv.reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)``, and ``unbind``s it, which pnnx cannot
lower. The forwards below compute the same thing (timm's own unfused path: scale, q @ k^T,
softmax, @ v) from a 4-D reshape to (B, N, 3 * heads, d), a permute and a ``chunk`` into q, k
and v. They replace the modules' forwards on a copy of the model that is only traced for pnnx;
verification compares the result with the original.
"""

import contextlib

from timmx.backends._module_swaps import Swaps, decomposition_swaps, resolve_swaps, swapped


def _split_heads(qkv, batch: int, tokens: int, heads: int, head_dim: int, order=(0, 2, 1, 3)):
    """(B, N, 3 * heads * d) -> q, k, v of shape (B, heads, N, d) (``order`` permutes)."""
    return qkv.reshape(batch, tokens, 3 * heads, head_dim).permute(*order).chunk(3, dim=1)


def _vit_attention(self, x, attn_mask=None, is_causal: bool = False):
    """timm.layers.Attention (ViT, DeiT, PiT, MobileViT, ...), unfused, 4-D."""
    if attn_mask is not None or is_causal:
        return type(self).forward(self, x, attn_mask, is_causal)
    batch, tokens, _ = x.shape
    gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
    q, k, v = _split_heads(self.qkv(x), batch, tokens, self.num_heads, self.head_dim)
    q, k = self.q_norm(q), self.k_norm(k)
    x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    x = self.norm(x.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim))
    if gate is not None:
        x = x * gate
    return self.proj(x)


def _talking_head_attention(self, x):
    """CaiT's TalkingHeadAttn, 4-D."""
    batch, tokens, channels = x.shape
    head_dim = channels // self.num_heads
    q, k, v = _split_heads(self.qkv(x), batch, tokens, self.num_heads, head_dim)
    attn = (q * self.scale) @ k.transpose(-2, -1)
    attn = self.proj_l(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).softmax(dim=-1)
    attn = self.proj_w(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return self.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, channels))


def _l2_normalize(x, eps: float = 1e-12):
    """``F.normalize(x, dim=-1)``: x / max(||x||, eps) over the last dimension."""
    return x / (x * x).sum(dim=-1, keepdim=True).sqrt().clamp(min=eps)


def _cross_covariance_attention(self, x):
    """XCiT's XCA and EdgeNeXt's CrossCovarianceAttn (channel attention), 4-D; F.normalize
    spelled out (pnnx's Normalize layer for it crashes ncnn on these shapes)."""
    batch, tokens, channels = x.shape
    head_dim = channels // self.num_heads
    q, k, v = _split_heads(self.qkv(x), batch, tokens, self.num_heads, head_dim, (0, 2, 3, 1))
    attn = (_l2_normalize(q) @ _l2_normalize(k).transpose(-2, -1)) * self.temperature
    x = attn.softmax(dim=-1) @ v
    return self.proj(x.permute(0, 3, 1, 2).reshape(batch, tokens, channels))


def _cached(self, key, make):
    """``make()`` once per layer and key, kept on the layer: a constant for the trace."""
    import torch

    cache = self.__dict__.setdefault("_timmx_constant", {})
    if key not in cache:
        with torch.no_grad():
            cache[key] = make().detach().clone()
    return cache[key]


def _constant_positions(self, *shape):
    """A Fourier position encoding depends on the image size alone: computed once, traced as
    a constant (pnnx cannot lower the arange/slice arithmetic that builds it)."""
    key = tuple(int(v) for v in (shape[0] if len(shape) == 1 else shape))
    return _cached(self, key, lambda: type(self).forward(self, *shape))


def _swin_window_attention(self, x):
    """Swin's shifted-window attention (SwinTransformerBlock._attn) for a batch of one, in
    tensors of at most 4 dimensions with a leading 1: the windows and heads share one axis
    (windows ordered column-major, the relative position bias and shift mask reordered to
    match) instead of timm's 6-D window partition and (windows, heads) batch."""
    import torch

    batch, height, width, channels = x.shape
    (wh, ww), (sh, sw) = self.window_size, self.shift_size
    if batch != 1 or height % wh or width % ww or getattr(self, "dynamic_mask", False):
        return type(self)._attn(self, x)
    attn, heads = self.attn, self.attn.num_heads
    nh, nw, tokens, head_dim = height // wh, width // ww, wh * ww, channels // heads
    windows = nh * nw
    if sh or sw:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    # (1, H, W, C) -> (1, nw * nh, wh * ww, C): window partition, column-major windows
    x = x.reshape(1, height, nw, ww * channels).permute(0, 2, 1, 3)
    x = x.reshape(1, windows, tokens, channels)
    qkv = attn.qkv(x).reshape(1, windows * tokens, 3 * heads, head_dim).permute(0, 2, 1, 3)
    q, k, v = qkv.reshape(1, 3 * heads * windows, tokens, head_dim).chunk(3, dim=1)
    scores = (q * attn.scale) @ k.transpose(-2, -1) + _swin_bias(self, nh, nw)
    x = scores.softmax(dim=-1) @ v  # (1, heads * windows, tokens, head_dim)
    x = x.reshape(1, heads, windows * tokens, head_dim).permute(0, 2, 1, 3)
    x = attn.proj(x.reshape(1, windows, tokens, channels))
    # window reverse: (1, nw * nh, wh * ww, C) -> (1, H, W, C)
    x = x.reshape(1, nw, height, ww * channels).permute(0, 2, 1, 3)
    x = x.reshape(1, height, width, channels)
    if sh or sw:
        x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
    return x


def _swin_bias(self, nh: int, nw: int):
    """Relative position bias plus shift mask, (1, heads * windows, N, N), computed before
    tracing (:func:`ncnn_friendly` runs the model once) so the trace holds a constant."""

    def make():
        bias = self.attn._get_rel_pos_bias()[0]  # (heads, N, N)
        heads, tokens = bias.shape[0], bias.shape[-1]
        total = bias[:, None].expand(heads, nh * nw, tokens, tokens)
        if self.attn_mask is not None:
            mask = self.attn_mask.reshape(nh, nw, tokens, tokens).transpose(0, 1)
            total = total + mask.reshape(1, nh * nw, tokens, tokens)
        return total.reshape(1, heads * nh * nw, tokens, tokens)

    return _cached(self, (nh, nw), make)


def _patch_merging(self, x):
    """Swin's PatchMerging without its 6-D reshape: the 2x2 neighbours of each position
    concatenated in timm's channel order (column offset, then row offset, then channel)."""
    import torch

    batch, height, width, channels = x.shape
    if batch != 1 or height % 2 or width % 2:
        return type(self).forward(self, x)
    rows = x.reshape(1, height // 2, 2, width * channels).chunk(2, dim=2)  # row offset 0, 1
    rows = [r.reshape(1, (height // 2) * (width // 2), 2, channels) for r in rows]
    x = torch.cat(rows, dim=3).reshape(1, height // 2, width // 2, 4 * channels)
    return self.reduction(self.norm(x))


def _strided_subsample(self, x):
    """LeViT's Downsample (``x[:, ::s, ::s]`` on a (B, H, W, C) view, a strided slice pnnx
    cannot lower) as a 1x1 max pool of stride s over the channels-first map: the same picks."""
    import torch.nn.functional as F

    if self.pool is not None:
        return type(self).forward(self, x)
    batch, _, channels = x.shape
    x = x.reshape(batch, self.resolution[0], self.resolution[1], channels).permute(0, 3, 1, 2)
    x = F.max_pool2d(x, kernel_size=1, stride=self.stride)
    return x.flatten(2).transpose(1, 2)


def _rotation(dim: int, half: bool, like):
    """The (dim, dim) matrix R with ``x @ R`` = timm's ``rot(x)`` (pairs: [-x1, x0, -x3, x2, ...])
    or ``rope_rotate_half(x)`` ([-x_{d/2}, ..., x0, ...]): strided slices and a 5-D stack pnnx
    cannot lower, as one exact product (each output is one input, negated or not)."""
    import torch

    rot = torch.zeros(dim, dim, dtype=like.dtype)
    for j in range(dim):
        if half:
            src, sign = (j + dim // 2, -1.0) if j < dim // 2 else (j - dim // 2, 1.0)
        else:
            src, sign = (j + 1, -1.0) if j % 2 == 0 else (j - 1, 1.0)
        rot[src, j] = sign
    return rot


def _apply_rope(x, rope, half: bool):
    """timm's ``apply_rot_embed_cat`` (x * cos + rot(x) * sin) with the rotation as a linear
    layer (``x @ R`` as a MatMul with a constant crashed pnnx 20261020; a Linear does not)."""
    import torch.nn.functional as F

    sin, cos = rope.chunk(2, dim=-1)
    return x * cos + F.linear(x, _rotation(x.shape[-1], half, x).t().contiguous()) * sin


def _eva_attention(self, x, rope=None, attn_mask=None, is_causal: bool = False):
    """EVA's attention (EVA-02, ViT with rotary embeddings, ...), 4-D: the fused qkv split by
    :func:`_split_heads` and the rotary embedding applied with a rotation matrix."""
    import torch
    import torch.nn.functional as F

    if attn_mask is not None or is_causal or self.qkv is None:
        return type(self).forward(self, x, rope, attn_mask, is_causal)
    batch, tokens, _ = x.shape
    gate = self.gate(x).sigmoid() if self.gate is not None else None
    if self.q_bias is None:
        qkv = self.qkv(x)
    elif self.qkv_bias_separate:
        qkv = self.qkv(x) + torch.cat((self.q_bias, self.k_bias, self.v_bias))
    else:
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = F.linear(x, weight=self.qkv.weight, bias=bias)
    q, k, v = _split_heads(qkv, batch, tokens, self.num_heads, self.head_dim)
    q, k = self.q_norm(q), self.k_norm(k)
    if rope is not None:
        npt, half = self.num_prefix_tokens, bool(getattr(self, "rotate_half", False))
        q = torch.cat([q[:, :, :npt], _apply_rope(q[:, :, npt:], rope, half)], dim=2)
        k = torch.cat([k[:, :, :npt], _apply_rope(k[:, :, npt:], rope, half)], dim=2)
    x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    x = self.norm(x.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim))
    if gate is not None:
        x = x * gate
    return self.proj(x)


def _constant_rope(self, shape=None, dtype=None):
    """A rotary embedding depends on the grid alone: computed once, traced as a constant."""
    key = (tuple(int(v) for v in shape) if shape is not None else None, dtype)
    return _cached(self, key, lambda: type(self).get_embed(self, shape, dtype))


def _pvt_attention(self, x, feat_size):
    """PVT-v2's spatial-reduction attention, 4-D: k and v split from the kv projection with a
    4-D reshape and ``chunk`` instead of a 5-D permute and ``unbind``."""
    batch, tokens, channels = x.shape
    height, width = feat_size
    heads, head_dim = self.num_heads, self.head_dim
    q = self.q(x).reshape(batch, tokens, heads, head_dim).permute(0, 2, 1, 3)
    if self.pool is not None or self.sr is not None:
        x = x.permute(0, 2, 1).reshape(batch, channels, height, width)
        x = self.sr(self.pool(x)) if self.pool is not None else self.sr(x)
        x = self.norm(x.reshape(batch, channels, -1).permute(0, 2, 1))
        if self.pool is not None:
            x = self.act(x)
    kv = self.kv(x)
    k, v = kv.reshape(batch, kv.shape[1], 2 * heads, head_dim).permute(0, 2, 1, 3).chunk(2, dim=1)
    x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    return self.proj(x.transpose(1, 2).reshape(batch, tokens, channels))


def _crossvit_head(self, xs, pre_logits: bool = False):
    """CrossViT's head: the mean of the branch heads as a sum, not a stack on a new axis (pnnx
    reduced the wrong axis of that stack: the ncnn output had one value instead of 1000)."""
    import torch

    if pre_logits or isinstance(self.head[0], torch.nn.Identity):
        return type(self).forward_head(self, xs, pre_logits)
    pooled = [x[:, 1:].mean(dim=1) if self.global_pool == "avg" else x[:, 0] for x in xs]
    logits = [head(self.head_drop(x)) for x, head in zip(pooled, self.head, strict=True)]
    return sum(logits[1:], logits[0]) / len(logits)


def _attention_rewrites() -> Swaps:
    """timm's attention classes (and ConvNeXt-V2's GRN) -> their 4-D forwards (classes this
    timm lacks are skipped)."""
    swaps = resolve_swaps(
        {
            ("timm.layers.attention", "Attention"): _vit_attention,
            ("timm.models.cait", "TalkingHeadAttn"): _talking_head_attention,
            ("timm.models.xcit", "XCA"): _cross_covariance_attention,
            ("timm.models.edgenext", "CrossCovarianceAttn"): _cross_covariance_attention,
            ("timm.models.xcit", "PositionalEncodingFourier"): _constant_positions,
            ("timm.models.edgenext", "PositionalEncodingFourier"): _constant_positions,
            ("timm.models.swin_transformer", "PatchMerging"): _patch_merging,
            ("timm.models.levit", "Downsample"): _strided_subsample,
            ("timm.models.eva", "EvaAttention"): _eva_attention,
            ("timm.models.pvt_v2", "Attention"): _pvt_attention,
            ("timm.models.crossvit", "CrossVit"): ("forward_head", _crossvit_head),
            ("timm.layers.pos_embed_sincos", "RotaryEmbeddingCat"): ("get_embed", _constant_rope),
            ("timm.models.swin_transformer", "SwinTransformerBlock"): (
                "_attn",
                _swin_window_attention,
            ),
        }
    )
    return {**swaps, **decomposition_swaps()}


@contextlib.contextmanager
def explicit_chunks():
    """While tracing: ``chunk`` into unequal pieces becomes slices with the same bounds. pnnx
    lowers every chunk to an equal ncnn Slice (and ``split_with_sizes`` to wrong sizes), so 88
    channels in 3 chunks (torch: 30, 30, 28) came out as 29, 29, 30 and ncnn read past the end
    (EdgeNeXt crashed)."""
    import torch

    original_method, original_function = torch.Tensor.chunk, torch.chunk

    def chunk(tensor, chunks, dim=0):
        # Python ints: a traced size would put C's truncating division in pnnx's hands
        size = int(tensor.shape[dim])
        if chunks <= 0 or size % chunks == 0:
            return original_method(tensor, chunks, dim)
        step = -(-size // chunks)
        lead = (slice(None),) * (dim % tensor.dim())
        return tuple(tensor[(*lead, slice(a, min(a + step, size)))] for a in range(0, size, step))

    torch.Tensor.chunk, torch.chunk = chunk, chunk
    try:
        yield
    finally:
        torch.Tensor.chunk, torch.chunk = original_method, original_function


def ncnn_friendly(module, example=None):
    """``module``, or a copy whose timm attention layers compute in 4-D ops; and how many
    layers were rewritten. The original is never modified. With ``example``, the copy runs
    once so the constants it caches (position encodings, Swin's bias) exist before tracing."""
    return swapped(module, _attention_rewrites(), example)
