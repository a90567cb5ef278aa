"""ncnn (a folder with model.ncnn.param, model.ncnn.bin, model_ncnn.py) via pnnx.

pnnx traces nothing itself: timmx traces the model with TorchScript, runs pnnx's bundled
converter inside a private work folder (it writes its intermediates next to its input), checks
that every expected file was written and that every operator was lowered to an ncnn layer (pnnx
exits 0 even when it leaves operators it cannot convert), and keeps only the ncnn files plus
``timmx.json`` (the metadata; it also marks the folder as a timmx export). Verification runs
the result with the ``ncnn`` Python runtime.
"""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from timmx.backends._module_swaps import Swaps, decomposition_swaps, resolve_swaps, swapped
from timmx.core.backend import MARKER_FILE, DependencyStatus, ExportBackend, installed_version
from timmx.core.options import option
from timmx.core.verify import VerifyReport, verify_with_runner
from timmx.errors import ConfigurationError, ExportError

PARAM_FILE = "model.ncnn.param"
BIN_FILE = "model.ncnn.bin"
PY_FILE = "model_ncnn.py"
METADATA_FILE = MARKER_FILE  # timmx.json: the metadata, also marking the folder as ours
NCNN_FILES = (PARAM_FILE, BIN_FILE, PY_FILE)
INPUT_BLOB = "in0"
OUTPUT_BLOB = "out0"
PNNX_TIMEOUT_S = 1800


@dataclass
class NcnnOptions:
    """``timmx export ncnn`` flags."""

    fp16: bool = option(True, "Store weights as float16 in model.ncnn.bin (half the size).")


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _layer_types(param: Path) -> list[str]:
    """Layer types listed in an ncnn .param file (first column after the two header lines)."""
    rows = param.read_text(encoding="utf-8", errors="replace").splitlines()[2:]
    return [row.split()[0] for row in rows if row.strip()]


def unlowered_operators(param: Path, log: str) -> list[str]:
    """Operators pnnx left as PyTorch ops ("ignore ..." in its log, dotted types in the param)."""
    found: list[str] = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "ignore":
            found.append(parts[1])
    found.extend(kind for kind in _layer_types(param) if "." in kind)
    return sorted(set(found))


def pnnx_executable() -> Path:
    """The converter binary bundled in the pnnx wheel (found without importing torch)."""
    import importlib.util

    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("pnnx is not installed; pip install 'timmx[ncnn]'.")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder / ("pnnx.exe" if os.name == "nt" else "pnnx")


# --- attention in shapes pnnx can lower --------------------------------------------------------
# ncnn tensors have at most 4 dimensions with a batch of 1. timm's attention splits its fused qkv
# projection with a 5-D reshape, ``qkv.reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)``, and
# ``unbind``s it, which pnnx cannot lower. The forwards below compute the same thing (timm's own
# unfused path: scale, q @ k^T, softmax, @ v) from a 4-D reshape to (B, N, 3 * heads, d), a
# permute and a ``chunk`` into q, k and v. They replace the modules' forwards on a copy of the
# model that is only traced for pnnx; verification compares the result with the original.


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


def _constant_positions(self, *shape):
    """A Fourier position encoding depends on the image size alone: computed once, traced as
    a constant (pnnx cannot lower the arange/slice arithmetic that builds it)."""
    import torch

    key = tuple(int(v) for v in (shape[0] if len(shape) == 1 else shape))
    cache = self.__dict__.setdefault("_timmx_constant", {})
    if key not in cache:
        with torch.no_grad():
            cache[key] = type(self).forward(self, *shape).detach()
    return cache[key]


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
    import torch

    key = (nh, nw)
    cache = self.__dict__.setdefault("_timmx_constant", {})
    if key not in cache:
        with torch.no_grad():
            bias = self.attn._get_rel_pos_bias()[0]  # (heads, N, N)
            heads, tokens = bias.shape[0], bias.shape[-1]
            total = bias[:, None].expand(heads, nh * nw, tokens, tokens)
            if self.attn_mask is not None:
                mask = self.attn_mask.reshape(nh, nw, tokens, tokens).transpose(0, 1)
                total = total + mask.reshape(1, nh * nw, tokens, tokens)
            cache[key] = total.reshape(1, heads * nh * nw, tokens, tokens).detach().clone()
    return cache[key]


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


def export_ncnn(prepared, directory: Path, *, fp16: bool = True) -> dict[str, object]:
    """Convert ``prepared`` into ``directory`` (which must exist): the ncnn param/bin, pnnx's
    ``model_ncnn.py`` example and ``timmx.json``. Returns what the metadata file holds.

    The model is traced, pnnx runs in a temporary folder beside ``directory`` and everything it
    writes besides the three ncnn files is deleted. Raises ExportError when pnnx fails, leaves a
    file out, or cannot lower an operator to ncnn.
    """
    import torch

    if prepared.batch_size != 1:
        raise ConfigurationError("ncnn has no batch dimension; use --batch-size 1.")
    work = Path(tempfile.mkdtemp(prefix=".pnnx-", dir=directory.parent))
    try:
        example = prepared.sample_input()
        module, rewritten = ncnn_friendly(prepared.module, example)
        with torch.inference_mode(False), torch.no_grad(), explicit_chunks():
            traced = torch.jit.trace(module, example, check_trace=False)
        del module
        traced.save(str(work / "model.pt"))
        del traced
        shape = ",".join(str(d) for d in example.shape)
        command = [
            str(pnnx_executable()),
            "model.pt",
            f"inputshape=[{shape}]f32",
            "device=cpu",
            f"fp16={1 if fp16 else 0}",
        ]
        try:
            done = subprocess.run(
                command, cwd=work, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExportError(f"Could not run pnnx ({command[0]}): {exc}") from exc
        log = f"{done.stdout}\n{done.stderr}"
        if done.returncode != 0:
            raise ExportError(
                f"pnnx failed with exit code {done.returncode}; its last lines:\n{_tail(log)}"
            )
        missing = [
            name
            for name in NCNN_FILES
            if not (work / name).is_file() or not (work / name).stat().st_size
        ]
        if missing:
            raise ExportError(
                f"pnnx exited 0 but did not write {', '.join(missing)}: its ncnn conversion "
                f"failed. Its last lines:\n{_tail(log)}"
            )
        unlowered = unlowered_operators(work / PARAM_FILE, log)
        if unlowered:
            raise ExportError(
                f"pnnx could not convert {len(unlowered)} operator type(s) to ncnn layers "
                f"({', '.join(unlowered)}), so ncnn cannot run {prepared.name}. Reshapes beyond "
                "4 dimensions (e.g. an attention pool's 5-D kv split) are a known pnnx limitation; "
                "export to onnx or another format instead."
            )
        for name in NCNN_FILES:
            shutil.move(str(work / name), str(directory / name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metadata: dict[str, object] = dict(prepared.metadata())
    metadata.update(
        {
            "format": "ncnn",
            "ncnn_input": INPUT_BLOB,
            "ncnn_output": OUTPUT_BLOB,
            "ncnn_input_shape": json.dumps(list(prepared.input_size)),
            "fp16_weights": str(fp16).lower(),
            "pnnx_version": installed_version("pnnx") or "unknown",
            "attention_rewritten": str(rewritten),
        }
    )
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def ncnn_runner(directory: Path, *, fp16: bool = True, threads: int | None = None):
    """A function running the ncnn model on each image of a batch (ncnn has no batch axis).

    With ``fp16`` ncnn keeps its defaults (fp16 storage/arithmetic where the CPU supports it);
    without, they are switched off so an fp32 model also computes in fp32.
    """
    import ncnn
    import numpy as np

    net = ncnn.Net()
    net.opt.num_threads = threads or os.cpu_count() or 1
    if not fp16:
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_arithmetic = False
        net.opt.use_bf16_storage = False
    if net.load_param(str(directory / PARAM_FILE)) != 0:
        raise ExportError(f"ncnn could not load {directory / PARAM_FILE}.")
    if net.load_model(str(directory / BIN_FILE)) != 0:
        raise ExportError(f"ncnn could not load {directory / BIN_FILE}.")

    def run(x):
        rows = []
        for image in x:
            with net.create_extractor() as extractor:
                extractor.input(INPUT_BLOB, ncnn.Mat(np.ascontiguousarray(image)).clone())
                status, out = extractor.extract(OUTPUT_BLOB)
                if status != 0:
                    raise ExportError(f"ncnn failed to compute {OUTPUT_BLOB} (status {status}).")
                rows.append(np.array(out, dtype=np.float32).reshape(-1))
        return np.stack(rows)

    run.net = net  # keeps the network alive as long as the runner
    return run


class NcnnBackend(ExportBackend):
    """ncnn export via pnnx, verified in the ncnn Python runtime."""

    name = "ncnn"
    help = (
        "Export to ncnn (folder with model.ncnn.param/.bin and model_ncnn.py) via pnnx; "
        "verified in the ncnn runtime."
    )
    Options = NcnnOptions
    output_is_dir = True
    requires = ("pnnx", "ncnn")
    extra = "ncnn"

    def check_dependencies(self) -> DependencyStatus:
        """pnnx converts (its bundled binary must be present); ncnn verifies."""
        state = super().check_dependencies()
        if state.available:
            binary = pnnx_executable()
            if not binary.is_file():
                return DependencyStatus(
                    available=False,
                    versions=state.versions,
                    install_hint=state.install_hint,
                    detail=f"the pnnx converter binary is missing ({binary}); reinstall pnnx",
                )
        return state

    def validate(self, job) -> None:
        """ncnn has no batch axis."""
        if job.common.batch_size != 1:
            raise ConfigurationError(
                f"ncnn has no batch dimension (got --batch-size {job.common.batch_size}); "
                "use --batch-size 1 and run images one at a time."
            )

    def precision(self, job) -> str:
        """fp16 weight storage or fp32."""
        return "fp16" if job.options.fp16 else "fp32"

    def convert(self, job, artifact: Path) -> None:
        """Trace, run pnnx in a private folder, keep the ncnn files and timmx.json."""
        metadata = export_ncnn(job.model, artifact, fp16=job.options.fp16)
        job.details["files"] = ", ".join([*NCNN_FILES, METADATA_FILE])
        rewritten = int(str(metadata.get("attention_rewritten", 0)))
        if rewritten:
            job.notes.append(
                f"{rewritten} attention layers traced in 4-D form for pnnx (same computation)"
            )
        job.notes.append(f"metadata in {METADATA_FILE} (ncnn has no metadata field)")

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """The ncnn runtime (fp32 exports run with fp16 storage/arithmetic off)."""
        yield ncnn_runner(artifact, fp16=job.options.fp16, threads=threads)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in ncnn and compare (tolerance per precision, top-1 must agree)."""
        note = None if job.options.fp16 else "ncnn run with fp16 storage/arithmetic off"
        with self.runtime(job, artifact) as run:
            return verify_with_runner(job, run, "ncnn", note=note)
