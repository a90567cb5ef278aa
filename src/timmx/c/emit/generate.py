"""Turn lowered steps into the generated C sources, the weights blob and the build files."""

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from timmx.c.emit.source import c_string, labels_body, model_source
from timmx.c.emit.symbols import Symbols
from timmx.c.emit.weights import HEADER_BYTES, VERSION, build_blob, layout_id
from timmx.c.lower.ir import ALIGN, Buffer, Ref, Step, StepKind, round_up
from timmx.c.plan import MemoryPlan, plan_memory

KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Generated:
    """What the generator wrote and the figures the report shows."""

    prefix: str
    files: list[str]
    arena_bytes: int
    weights_bytes: int
    steps: int
    plan: MemoryPlan
    kinds: dict[str, int] = field(default_factory=dict)


def c_identifier(name: str) -> str:
    """A C identifier made from a model name (``resnet50.a1_in1k`` -> ``resnet50_a1_in1k``)."""
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", name).strip("_").lower() or "model"
    if ident[0].isdigit():
        ident = "m_" + ident
    return ident


def kernel_sources() -> list[Path]:
    """The kernel library's C sources (the kernel engineer's and the generic gen_*.c)."""
    return sorted((KERNELS_DIR / "src").glob("*.c"))


def kernel_headers() -> list[Path]:
    """Headers of the kernel library (public and internal)."""
    return sorted((KERNELS_DIR / "include").glob("*.h")) + sorted(
        p for p in (KERNELS_DIR / "src").rglob("*") if p.suffix in (".h", ".inc")
    )


def pack_weights(steps: list[Step], buffers: list[Buffer]) -> None:
    """Pack conv/linear weights (BatchNorm already folded) into weight buffers (a fused
    1x1 -> depthwise step: both convs', the 1x1's as ``pw_packed``; a conv with an SE gate
    folded in reads the gated copy its gate step writes, which reads the packed weights)."""
    for i, step in enumerate(steps):
        if step.kind is StepKind.CONV_PW_DW:
            pw = step.attrs["pw"]
            _pack_one(pw, f"w{i}p", buffers)
            step.attrs["pw_packed"] = pw.attrs["packed"]
        _pack_one(step, f"w{i}", buffers, step.attrs.get("dw_module"))
        gate = step.attrs.get("gate_step")
        if gate is not None:
            gate.attrs["packed"] = step.attrs["packed"]
            step.attrs["packed"] = step.attrs["gated_packed"]


def _pack_one(step: Step, name: str, buffers: list[Buffer], module: str | None = None) -> None:
    """Pack one conv / linear step's weights into a new weight buffer ``name`` (named in the
    weights map after ``module``, else the step's module)."""
    from timmx.c import packing

    if step.kind in (StepKind.CONV, StepKind.CONV_PW_DW):
        w = step.attrs["weight"].numpy()
        b = step.attrs["bias"]
        groups = step.attrs["groups"]
        oc, icg, kh, kw = (int(d) for d in w.shape)
        step.attrs["kh"], step.attrs["kw"] = kh, kw
        bias = None if b is None else b.numpy()
        if step.attrs.get("algo", "DIRECT") == "WINOGRAD":
            data = packing.pack_conv2d_winograd(w, bias)
            note = f"packed winograd F(4x4,3x3), oc {oc}, ic {icg}"
        else:
            data = packing.pack_conv2d(w, bias, groups)
            if packing.is_depthwise(icg * groups, oc, groups):
                note = f"packed dwconv, c {oc}, k {kh}x{kw}"
            else:
                note = f"packed gemm, oc {oc}, k {kh}x{kw}x{icg}"
                note += f", groups {groups}" if groups > 1 else ""
    elif step.kind is StepKind.LINEAR:
        w = step.attrs["weight"].numpy()
        b = step.attrs["bias"]
        data = packing.pack_linear(w, None if b is None else b.numpy())
        note = f"packed gemm, n {w.shape[0]}, k {w.shape[1]}"
    else:
        return
    buf = Buffer(nfloats=data.size, kind="weight", name=name, data=data)
    buf.module, buf.note = module or step.module, note
    buffers.append(buf)
    step.attrs["packed"] = Ref(shape=(data.size,), strides=(1,), buf=buf)


def layout_weights(steps: list[Step]) -> tuple[bytes, list[Buffer], str]:
    """Place every weight buffer a step reads at a 64-byte aligned payload offset."""
    import numpy as np

    used: dict[int, Buffer] = {}
    for step in steps:
        for ref in step.touched():
            if ref.buf is not None and ref.buf.kind == "weight":
                used.setdefault(id(ref.buf), ref.buf)
    chunks = []
    offset = 0
    desc = []
    for buf in used.values():
        offset = round_up(offset, ALIGN)
        buf.offset = offset
        data = np.ascontiguousarray(buf.data, dtype="<f4").reshape(-1)
        chunks.append((offset, data.tobytes()))
        desc.append(f"{buf.name}:{offset}:{data.size}")
        offset += data.nbytes
    total = round_up(max(offset, ALIGN), ALIGN)
    payload = bytearray(total)
    for off, raw in chunks:
        payload[off : off + len(raw)] = raw
    return bytes(payload), list(used.values()), ";".join(desc)


def _render(name: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


def generate(
    lowered,
    prepared,
    out_dir: Path,
    *,
    prefix: str,
    embed_weights: bool = False,
    nhwc_input: bool = False,
    scratch_sizer=None,
    copy_kernels: bool = True,
) -> Generated:
    """Write ``<prefix>.h``, ``<prefix>.c``, the weights, kernels, main.c and build files."""
    steps = lowered.steps
    buffers = lowered.buffers
    pack_weights(steps, buffers)
    if scratch_sizer is not None:
        for step in steps:
            step.scratch = int(scratch_sizer(step))
    payload, wbufs, wdesc = layout_weights(steps)
    plan = plan_memory(steps, buffers)
    arena = max(plan.arena_bytes, ALIGN)
    in_shape = lowered.input_ref.shape
    out_shape = lowered.output_ref.shape
    lid = layout_id(f"{prefix}|{wdesc}|{len(payload)}")
    blob = build_blob(payload, lid)
    P = prefix.upper()
    kinds: dict[str, int] = {}
    for step in steps:
        kinds[str(step.kind)] = kinds.get(str(step.kind), 0) + 1
    source = model_source(steps, Symbols(steps, wbufs, plan.live), P)
    meta = prepared.metadata()
    labels = prepared.labels or []
    mean = ", ".join(f"{v!r}f" for v in prepared.mean)
    std = ", ".join(f"{v!r}f" for v in prepared.std)
    values = {
        "PREFIX": prefix,
        "P": P,
        "MODEL": prepared.name,
        "ARENA_SIZE": str(arena),
        "WEIGHTS_SIZE": str(len(blob)),
        "PAYLOAD_SIZE": str(len(payload)),
        "LAYOUT_ID": f"0x{lid:016x}ULL",
        "WEIGHTS_VERSION": str(VERSION),
        "HEADER_BYTES": str(HEADER_BYTES),
        "INPUT_SIZE": str(lowered.input_ref.numel),
        "OUTPUT_SIZE": str(lowered.output_ref.numel),
        "IN_N": str(in_shape[0]),
        "IN_C": str(in_shape[1] if len(in_shape) > 1 else 1),
        "IN_H": str(in_shape[2] if len(in_shape) > 2 else 1),
        "IN_W": str(in_shape[3] if len(in_shape) > 3 else 1),
        "OUTPUT_SHAPE": ", ".join(str(s) for s in out_shape),
        "OUTPUT_RANK": str(len(out_shape)),
        "NHWC_INPUT": "1" if nhwc_input else "0",
        "NORMALIZE": "1" if prepared.normalize else "0",
        "SOFTMAX": "1" if prepared.softmax else "0",
        "MEAN": mean,
        "STD": std,
        "NUM_CLASSES": str(prepared.num_classes),
        "NUM_LABELS": str(len(labels)),
        "LABELS_BODY": labels_body(prefix, P, labels),
        "META": "\n".join(
            f" *   {k}: {v if len(v) < 200 else v[:200] + '...'}".replace("*/", "* /")
            for k, v in meta.items()
        ),
        "INTERPOLATION": c_string(prepared.interpolation),
        "CROP_PCT": repr(float(prepared.crop_pct)),
        "EMBEDDED": "1" if embed_weights else "0",
        "STEPS": str(len(steps)),
        "WEIGHTS_MAP": source.weights_map,
        "ARENA_MAP": source.arena_map,
        "STEP_DATA": source.step_data,
        "RUN_LOCALS": source.run_locals,
        "RUN_SETUP": source.run_setup,
        "BODY": source.body,
        "SCRATCH_CHECKS": source.scratch_checks,
        "PROFILE_NAMES": source.profile_names,
        "PROFILE_KINDS": source.profile_kinds,
        "PROFILE_FLOPS": source.profile_flops,
        "WEIGHTS_FILE": f"{prefix}_weights.bin",
        "KERNEL_SOURCES": " ".join(f"kernels/src/{p.name}" for p in kernel_sources()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for template, name in (
        ("model.h.in", f"{prefix}.h"),
        ("model.c.in", f"{prefix}.c"),
        ("labels.c.in", f"{prefix}_labels.c"),
        ("main.c.in", "main.c"),
        ("Makefile.in", "Makefile"),
        ("CMakeLists.txt.in", "CMakeLists.txt"),
        ("README.md.in", "README.md"),
    ):
        (out_dir / name).write_text(_render(template, values))
        files.append(name)
    if embed_weights:
        (out_dir / f"{prefix}_weights.c").write_text(_embedded(prefix, blob))
        files.append(f"{prefix}_weights.c")
    else:
        (out_dir / f"{prefix}_weights.bin").write_bytes(blob)
        files.append(f"{prefix}_weights.bin")
    if copy_kernels:
        kdir = out_dir / "kernels"
        (kdir / "include").mkdir(parents=True, exist_ok=True)
        (kdir / "src").mkdir(parents=True, exist_ok=True)
        for p in sorted((KERNELS_DIR / "include").glob("*.h")):
            shutil.copy2(p, kdir / "include" / p.name)
        for p in sorted((KERNELS_DIR / "src").rglob("*")):  # headers may sit in subfolders
            if p.suffix in (".c", ".h", ".inc"):
                dst = kdir / "src" / p.relative_to(KERNELS_DIR / "src")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dst)
        files.append("kernels/")
    return Generated(
        prefix=prefix,
        files=files,
        arena_bytes=arena,
        weights_bytes=len(blob),
        steps=len(steps),
        plan=plan,
        kinds=kinds,
    )


def _embedded(prefix: str, blob: bytes) -> str:
    import numpy as np

    words = np.frombuffer(blob, dtype="<u4")
    lines = []
    for i in range(0, words.size, 8):
        lines.append("  " + ", ".join(f"0x{int(w):08x}u" for w in words[i : i + 8]) + ",")
    P = prefix.upper()
    return (
        f"/* {prefix}_weights.c - the weights of {prefix}.h as a C array (generated by timmx). */\n"
        f'#include "{prefix}.h"\n\n'
        "#if defined(__GNUC__) || defined(__clang__)\n"
        "#define TXM_ALIGNED64 __attribute__((aligned(64)))\n"
        "#elif defined(_MSC_VER)\n"
        "#define TXM_ALIGNED64 __declspec(align(64))\n"
        "#else\n"
        "#define TXM_ALIGNED64\n"
        "#endif\n\n"
        f"static const TXM_ALIGNED64 unsigned int {prefix}_weights_words[{words.size}] = {{\n"
        + "\n".join(lines)
        + "\n};\n\n"
        f"const void* {prefix}_embedded_weights(void) {{ return {prefix}_weights_words; }}\n"
        f"size_t {prefix}_embedded_weights_size(void) {{ return {P}_WEIGHTS_SIZE; }}\n"
    )
