"""Capture a prepared model with ``torch.export`` and lower its Core ATen graph to steps.

Constants (parameters, buffers and everything computed only from them) are folded with
torch at export time. View ops become strided ``Ref`` objects (no copy); compute ops become
``Step`` objects calling the kernel library: the op families in ``lower/ops/`` register their
lowerings in ``lower/registry.py``, which :meth:`Lowering.call` looks up. An op the C target
cannot lower raises :class:`UnsupportedOpError` naming the op and the timm module it came from.
"""

import math
import operator

from timmx.c.lower import ops  # noqa: F401  (importing the op families registers them)
from timmx.c.lower.ir import (
    Buffer,
    Ref,
    Step,
    StepKind,
    UnsupportedOpError,
    contiguous_strides,
    dense_order,
    nhwc_strides,
    norm_strides,
    pixel_stride,
    strides_for_order,
)
from timmx.c.lower.registry import HANDLERS

# aten ops that only change how memory is viewed (computed on meta tensors).
VIEW_OPS = {
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.permute.default",
    "aten.transpose.int",
    "aten.t.default",
    "aten.expand.default",
    "aten.slice.Tensor",
    "aten.select.int",
    "aten.squeeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.unsqueeze.default",
    "aten.as_strided.default",
    "aten.alias.default",
    "aten.unfold.default",
    "aten.narrow.default",
    "aten.flatten.using_ints",
    "aten.unflatten.int",
}
# ops whose value equals their input (no mutation ever happens in the lowered graph)
IDENTITY_OPS = {
    "aten.clone.default",
    "aten.contiguous.default",
    "aten.detach.default",
    "aten.lift_fresh_copy.default",
    "aten.dropout.default",
}
MULTI_VIEW_OPS = {
    "aten.split_with_sizes.default",
    "aten.split.Tensor",
    "aten.unbind.int",
    "aten.chunk.default",
}
# ops kept whole by run_decompositions (the 2-D resizes, lowered as separable GEMMs)
KEEP_OPS = (
    "aten.upsample_nearest2d.vec",
    "aten.upsample_nearest2d.default",
    "aten._upsample_nearest_exact2d.vec",
    "aten._upsample_nearest_exact2d.default",
    "aten.upsample_bilinear2d.vec",
    "aten.upsample_bicubic2d.vec",
    "aten._upsample_bilinear2d_aa.vec",
    "aten._upsample_bicubic2d_aa.vec",
)
NO_OPS = {"aten._assert_tensor_metadata.default", "aten._assert_scalar.default"}


def module_of(node) -> str:
    """``path (Type)`` of the innermost timm module a node came from, or ``""``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, kind = list(stack.values())[-1]
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    name = name.rsplit(".", 1)[-1]
    path = str(path)
    for prefix in ("L['self'].", "L__self__."):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    return f"{path} ({name})" if path else name


def capture(module, sample):
    """``torch.export`` the module on ``sample`` (static shapes) and decompose to Core ATen."""
    import torch

    with torch.no_grad():
        program = torch.export.export(module, (sample,), strict=False)
        table = torch.export.default_decompositions()
        for name in KEEP_OPS:  # lowered whole: their decompositions index with clamped tensors
            packet, _, overload = name.removeprefix("aten.").partition(".")
            op = getattr(getattr(torch.ops.aten, packet, None), overload, None)
            if op is not None:
                table.pop(op, None)
        return program.run_decompositions(table)


class Lowering:
    """Walks the exported graph once, producing refs, buffers and steps."""

    def __init__(self, program, *, nhwc_input: bool = False) -> None:
        self.program = program
        self.nhwc_input = nhwc_input
        self.steps: list[Step] = []
        self.buffers: list[Buffer] = []
        self.env: dict = {}
        self.module = ""
        self.op = ""
        self.input_ref: Ref | None = None
        self.output_ref: Ref | None = None
        self._const_cache: dict[int, tuple[Ref, Ref]] = {}

    # -- helpers -------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        """Raise UnsupportedOpError for the current op."""
        where = f" (from timm module {self.module})" if self.module else ""
        raise UnsupportedOpError(
            f"The C target cannot lower {self.op}{where}: {message}. "
            "Export another format (e.g. onnx), or report the op so the C target can learn it."
        )

    def new_buffer(self, nfloats: int, kind: str = "arena", name: str = "", data=None) -> Buffer:
        """A new buffer, registered for the memory plan."""
        buf = Buffer(nfloats=int(nfloats), kind=kind, name=name or f"t{len(self.buffers)}")
        buf.data = data
        buf.module = self.module
        self.buffers.append(buf)
        return buf

    def new_ref(self, shape, strides=None) -> Ref:
        """A ref over a fresh arena buffer (dense, contiguous unless ``strides``)."""
        shape = tuple(int(s) for s in shape)
        strides = tuple(strides) if strides is not None else contiguous_strides(shape)
        span = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) if shape else 1
        if any(n == 0 for n in shape):
            span = 1
        return Ref(shape=shape, strides=strides, buf=self.new_buffer(span))

    def emit(self, kind: StepKind, ins, out, **attrs) -> Step:
        """Append a step."""
        step = Step(kind=kind, ins=list(ins), out=out, attrs=attrs, module=self.module)
        self.steps.append(step)
        return step

    def const(self, value) -> Ref:
        """A compile-time constant ref."""
        import torch

        t = torch.as_tensor(value)
        return Ref(shape=tuple(t.shape), strides=tuple(t.stride()), const=t)

    def runtime(self, ref: Ref) -> Ref:
        """A ref C code can read: constants become (broadcast-compacted) weight buffers."""
        import numpy as np
        import torch

        if ref.const is None:
            return ref
        key = id(ref)
        if key in self._const_cache and self._const_cache[key][0] is ref:
            return self._const_cache[key][1]
        t = ref.const
        if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.bool)):
            self.fail(f"constant of dtype {t.dtype} is not supported")
        t = t.detach().to(torch.float32)
        # drop broadcast (stride 0) dims so an expanded constant stays small
        compact = t
        bdims = [d for d in range(t.ndim) if t.stride(d) == 0 and t.shape[d] > 1]
        for d in bdims:
            compact = compact.narrow(d, 0, 1)
        compact = compact.contiguous()
        strides = list(contiguous_strides(tuple(compact.shape)))
        for d in bdims:
            strides[d] = 0
        data = np.ascontiguousarray(compact.cpu().numpy().reshape(-1), dtype=np.float32)
        buf = self.new_buffer(data.size, kind="weight", name=f"c{len(self.buffers)}", data=data)
        out = Ref(shape=tuple(t.shape), strides=tuple(strides), buf=buf)
        self._const_cache[key] = (ref, out)  # keeps ``ref`` alive so its id stays unique
        return out

    def materialize(self, ref: Ref, strides) -> Ref:
        """``ref`` with exactly ``strides`` (for non-size-1 dims): itself, or a copy."""
        strides = tuple(strides)
        ref = self.runtime(ref)
        if (
            norm_strides(ref.shape, ref.strides) == norm_strides(ref.shape, strides)
            and ref.buf.kind != "weight"
        ):
            return ref
        if norm_strides(ref.shape, ref.strides) == norm_strides(ref.shape, strides):
            return ref
        out = self.new_ref(ref.shape, strides)
        self.emit(StepKind.COPY, [ref], out)
        return out

    def nhwc(self, ref: Ref, *, allow_pixel_stride: bool = True) -> Ref:
        """A 4-D ref in NHWC layout (channels innermost; optionally a wider pixel stride)."""
        ref = self.runtime(ref)
        if ref.ndim != 4:
            self.fail(f"expected a 4-D tensor, got shape {list(ref.shape)}")
        _n, c, _h, _w = ref.shape
        ps = pixel_stride(ref)
        if ps is not None and (allow_pixel_stride or ps == c):
            return ref
        return self.materialize(ref, nhwc_strides(ref.shape))

    def dense_like(self, ref: Ref, shape=None) -> tuple[int, ...]:
        """Dense strides with ``ref``'s dim order (NHWC for 4-D non-dense refs)."""
        shape = tuple(shape or ref.shape)
        if ref.const is None and ref.ndim == len(shape):
            return strides_for_order(shape, dense_order(ref))
        if len(shape) == 4:
            return nhwc_strides(shape)
        return contiguous_strides(shape)

    # -- driver --------------------------------------------------------------------------
    def run(self) -> None:
        """Lower every node of the graph."""
        import torch

        program = self.program
        params = {}
        sig = program.graph_signature
        for spec in sig.input_specs:
            kind = spec.kind.name
            name = spec.arg.name
            if kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                if spec.target in program.state_dict:
                    params[name] = program.state_dict[spec.target]
                else:  # non-persistent buffers and lifted constants
                    params[name] = program.constants[spec.target]
        for node in program.graph.nodes:
            self.module = module_of(node)
            self.op = str(node.target)
            if node.op == "placeholder":
                if node.name in params:
                    self.env[node] = self.const(params[node.name].detach())
                    continue
                if self.input_ref is not None:
                    self.op = "input"
                    self.fail("models with more than one input are not supported")
                shape = tuple(int(s) for s in node.meta["val"].shape)
                strides = nhwc_strides(shape) if self.nhwc_input else contiguous_strides(shape)
                buf = self.new_buffer(math.prod(shape), kind="input", name="input")
                self.input_ref = Ref(shape=shape, strides=strides, buf=buf)
                self.env[node] = self.input_ref
            elif node.op == "call_function":
                with torch.no_grad():
                    self.env[node] = self.call(node)
            elif node.op == "output":
                outs = node.args[0]
                if len(outs) != 1:
                    self.op = "output"
                    self.fail("models with more than one output are not supported")
                self.finish(self.env[outs[0]])

    def finish(self, ref) -> None:
        """Copy the result into the caller's output buffer (contiguous, PyTorch's shape)."""
        if not isinstance(ref, Ref):
            self.fail("the model output is not a tensor")
        ref = self.runtime(ref)
        buf = self.new_buffer(ref.numel, kind="output", name="output")
        out = Ref(shape=ref.shape, strides=contiguous_strides(ref.shape), buf=buf)
        producer = None
        if (
            ref.buf.kind == "arena"
            and ref.offset == 0
            and ref.buf.nfloats == ref.numel
            and norm_strides(ref.shape, ref.strides) == norm_strides(out.shape, out.strides)
        ):
            producer = ref.buf
        if producer is not None:
            # the last producer writes straight into the output buffer
            producer.kind = "output"
            producer.name = "output"
            self.buffers.remove(buf)
            out = ref
        else:
            self.emit(StepKind.COPY, [ref], out)
        self.output_ref = out

    def arg(self, a):
        """Resolve FX args: nodes to env values, recursively through lists."""
        import torch.fx

        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, list | tuple):
            return type(a)(self.arg(x) for x in a)
        return a

    def call(self, node):
        """Lower one call_function node."""
        import torch

        name = str(node.target)
        if node.target is operator.getitem:
            seq, i = self.arg(node.args[0]), node.args[1]
            value = seq[i]
            if value is None:
                self.fail("an auxiliary output (indices / statistics) is used by the model")
            return value
        if name in NO_OPS:
            return None
        args = self.arg(node.args)
        kwargs = {k: self.arg(v) for k, v in node.kwargs.items()}
        refs = [r for r in _flatten((args, list(kwargs.values()))) if isinstance(r, Ref)]
        if all(r.const is not None for r in refs) and isinstance(
            node.target, torch._ops.OpOverload
        ):
            return self.fold(node, args, kwargs)
        if name in IDENTITY_OPS:
            return args[0]
        if name == "aten._to_copy.default":
            dtype = kwargs.get("dtype")
            if dtype not in (None, torch.float32):
                self.fail(f"a cast to {dtype} of a runtime tensor")
            return args[0]
        if name in VIEW_OPS or name in MULTI_VIEW_OPS:
            return self.view(node, args, kwargs)
        handler = HANDLERS.get(name)
        if handler is None:
            self.fail("no lowering for this op")
        val = node.meta.get("val")
        return handler(self, node, args, kwargs, val)

    def fold(self, node, args, kwargs):
        """Evaluate an op on constants with torch."""
        import torch

        def sub(a):
            if isinstance(a, Ref):
                return a.const
            if isinstance(a, list | tuple):
                return type(a)(sub(x) for x in a)
            return a

        result = node.target(*sub(args), **{k: sub(v) for k, v in kwargs.items()})

        def wrap(v):
            if isinstance(v, torch.Tensor):
                return Ref(shape=tuple(v.shape), strides=tuple(v.stride()), const=v)
            if isinstance(v, list | tuple):
                return type(v)(wrap(x) for x in v)
            return v

        return wrap(result)

    def view(self, node, args, kwargs):
        """Compute a view on a meta tensor with the same strides; never copies when possible."""
        import torch

        x = args[0]
        span = x.buf.nfloats if x.buf is not None else 1
        meta = torch.empty(span, device="meta").as_strided(x.shape, x.strides, x.offset)
        try:
            result = node.target(meta, *args[1:], **kwargs)
        except RuntimeError:
            # not expressible as a view of this layout: copy to contiguous first
            x = self.materialize(x, contiguous_strides(x.shape))
            meta = torch.empty(x.buf.nfloats, device="meta").as_strided(
                x.shape, x.strides, x.offset
            )
            result = node.target(meta, *args[1:], **kwargs)

        def wrap(t):
            if isinstance(t, list | tuple):
                return type(t)(wrap(v) for v in t)
            return Ref(
                shape=tuple(t.shape),
                strides=tuple(t.stride()),
                buf=x.buf,
                offset=int(t.storage_offset()),
            )

        return wrap(result)

    # -- elementwise ---------------------------------------------------------------------
    def unary(self, x: Ref, op: str, p0: float = 0.0, p1: float = 0.0) -> Ref:
        """An elementwise unary step (txk act or txg op)."""
        x = self.runtime(x)
        out = self.new_ref(x.shape, self.dense_like(x))
        self.emit(StepKind.UNARY, [x], out, op=op, p0=float(p0), p1=float(p1))
        return out

    def binary_refs(self, op: str, a: Ref, b: Ref, shape) -> Ref:
        """``a op b`` broadcast to ``shape``."""
        main = a if a.const is None and a.shape == tuple(shape) else b
        if main.const is not None or main.shape != tuple(shape):
            main = a if a.const is None else b
        strides = (
            self.dense_like(main, shape)
            if main.ndim == len(shape) and main.const is None
            else contiguous_strides(shape)
        )
        out = self.new_ref(shape, strides)
        self.emit(StepKind.BINARY, [self.runtime(a), self.runtime(b)], out, op=op)
        return out


def _flatten(x):
    if isinstance(x, list | tuple):
        for v in x:
            yield from _flatten(v)
    else:
        yield x
