"""Live weights: a timm model whose every branch computes something, for tests and benchmarks.

timm's random init is no basis for judging an exporter. It zero-initialises the last norm of
residual branches (ResNet family: ``zero_init_last``) and starts LayerScale at 1e-5/1e-6
(ConvNeXt, MetaFormer, FastViT), so those branches add nothing and a wrong kernel inside them
still "verifies"; other families, whose BatchNorm running statistics stay at 0/1, blow their
activations up to logits of 1e8. :func:`live_weights` fixes both, deterministically:

1. every norm's affine is drawn non-degenerate (scale in [0.6, 1.2], shift ~ N(0, 0.1));
2. every linear/conv weight is drawn variance-preserving, std sqrt(1/fan_in) (timm's
   trunc_normal(0.02) and zero inits leave branches nearly silent), biases small;
3. every layer-scale-like parameter (constant, nonzero, tiny) is drawn in [0.5, 1.0]; other
   varying parameters (position embeddings, class tokens, bias tables) get std 0.3;
4. BatchNorm statistics are recalibrated on real photographs (:mod:`timmx.testing.images`),
   so activations stay O(1) through the depth;
5. the classifier is rescaled so the logits' standard deviation on those photos is
   ``logit_std`` (|logits| then stay within ~30).
"""

from __future__ import annotations

import contextlib

NORM_SCALE = (0.6, 1.2)
NORM_SHIFT_STD = 0.1
LAYER_SCALE = (0.5, 1.0)
TINY = 1e-3
BIAS_STD = 0.05
EMBED_STD = 0.3
CALIBRATION_IMAGES = 48
CALIBRATION_BATCH = 16


def _is_norm(module) -> bool:
    import torch

    norm_types = (
        torch.nn.modules.batchnorm._NormBase,
        torch.nn.LayerNorm,
        torch.nn.GroupNorm,
    )
    return isinstance(module, norm_types) or "Norm" in type(module).__name__


def _is_layer_scale(param) -> bool:
    """Constant, nonzero and tiny: LayerScale-style init (1e-5, 1e-6); biases are exactly 0."""
    if param.numel() == 0 or param.dim() > 4:
        return False
    first = param.detach().flatten()[0]
    return bool(0 < abs(float(first)) <= TINY and (param == first).all())


def _normal(param, generator, std: float) -> None:
    import torch

    param.copy_(torch.randn(param.shape, generator=generator) * std)


def _redraw(model, generator) -> None:
    """Draw every parameter from ``generator`` (deterministic whatever the init), except
    constants that are not layer scales (ones, zeros in odd places), which are kept."""
    import torch

    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    handled: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            bias = getattr(module, "bias", None)
            if _is_norm(module):
                if isinstance(weight, torch.nn.Parameter):
                    low, high = NORM_SCALE
                    weight.copy_(torch.rand(weight.shape, generator=generator) * (high - low) + low)
                if isinstance(bias, torch.nn.Parameter):
                    _normal(bias, generator, NORM_SHIFT_STD)
            elif isinstance(module, layers) and isinstance(weight, torch.nn.Parameter):
                # Variance-preserving (LeCun): timm's trunc_normal(.02) leaves narrow MLP and
                # attention branches nearly silent, and zero inits silence them entirely.
                _normal(weight, generator, (1.0 / max(1, weight[0].numel())) ** 0.5)
                if isinstance(bias, torch.nn.Parameter):
                    _normal(bias, generator, BIAS_STD)
            else:
                continue
            handled.update(id(p) for p in module.parameters(recurse=False))
        for _, param in model.named_parameters():
            if id(param) in handled or not param.is_floating_point() or param.numel() == 0:
                continue
            if _is_layer_scale(param):
                low, high = LAYER_SCALE
                param.copy_(torch.rand(param.shape, generator=generator) * (high - low) + low)
            elif param.numel() > 1 and not (param == param.flatten()[0]).all():
                # position embeddings, class tokens, attention bias tables: visible, not noise
                _normal(param, generator, EMBED_STD)


@contextlib.contextmanager
def _batchnorm_training(model):
    """Eval mode everywhere except BatchNorm, whose statistics accumulate (momentum None)."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield norms
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()


def _classifiers(model) -> list:
    """The classifier layers (several for distilled heads such as LeViT's)."""
    import torch

    getter = getattr(model, "get_classifier", None)
    heads = getter() if callable(getter) else None
    if not isinstance(heads, tuple | list):
        heads = [heads]
    found = []
    for head in heads:
        if isinstance(head, torch.nn.Module):
            kinds = torch.nn.Linear | torch.nn.Conv2d
            layers = [m for m in head.modules() if isinstance(m, kinds)]
            found.extend(layers[-1:])
    return found


def live_weights(model, *, seed: int = 0, images=None, logit_std: float = 3.0):
    """Make ``model`` (a timm model, before re-parameterization) live, in place; returns it.

    ``images`` (N, C, H, W) in the model's input range are the calibration photos; by default
    48 crops of :func:`timmx.testing.images.real_photos` through the model's eval transform.
    The result is deterministic for a given ``seed``.
    """
    import torch

    from timmx.testing.images import photo_batch

    generator = torch.Generator().manual_seed(seed)
    _redraw(model, generator)
    if images is None:
        from timmx._torch_env import import_timm

        config = import_timm().data.resolve_data_config({}, model=model)
        size = tuple(int(v) for v in config["input_size"])
        images = photo_batch(size, config, CALIBRATION_IMAGES, seed=seed)
    with torch.no_grad():
        with _batchnorm_training(model):
            for start in range(0, images.shape[0], CALIBRATION_BATCH):
                model(images[start : start + CALIBRATION_BATCH])
        heads = _classifiers(model)
        if heads:
            logits = model(images[:CALIBRATION_BATCH])
            spread = float(logits.std())
            if spread > 0:
                for head in heads:
                    head.weight.mul_(logit_std / spread)
                    if head.bias is not None:
                        head.bias.mul_(logit_std / spread)
    return model.eval()


def residual_ratios(model, x) -> list[tuple[str, float]]:
    """At every residual add, the smaller operand's norm over the larger one's.

    The model is captured with torch.export; an add counts as residual when both operands are
    tensors of the output's shape (broadcast adds such as biases and position embeddings, and
    adds of a constant, are left out). Use a batch of 2 or more so batch-broadcast adds drop
    out. Returns (node name, ratio) in graph order; a dead branch shows as a ratio near 0.
    """
    import torch

    program = torch.export.export(model.eval(), (x,), strict=False)
    module = program.module()
    adds = {torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}
    found: list[tuple[str, float]] = []

    class Recorder(torch.fx.Interpreter):
        def call_function(self, target, args, kwargs):
            norms = None
            if target in adds and len(args) >= 2:
                a, b = args[0], args[1]
                if (
                    isinstance(a, torch.Tensor)
                    and isinstance(b, torch.Tensor)
                    and a.shape == b.shape
                    and a.is_floating_point()
                ):
                    norms = float(a.norm()), float(b.norm())  # before an in-place add_
            out = super().call_function(target, args, kwargs)
            if norms is not None and out.shape == args[0].shape:
                top = max(norms)
                found.append((str(self.current_node), min(norms) / top if top else 0.0))
            return out

        def run_node(self, n):
            self.current_node = n
            return super().run_node(n)

    with torch.no_grad():
        Recorder(module).run(x)
    return found
