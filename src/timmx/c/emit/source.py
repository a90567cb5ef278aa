"""The parts of ``<prefix>.c`` and ``<prefix>_labels.c`` that depend on the steps: the maps,
the file-scope step data, the body of ``run()``, the scratch check and the label table."""

import json
from dataclasses import dataclass

from timmx.c.descriptors import SCRATCH_SIZE_FUNCTIONS, descriptor
from timmx.c.emit.steps import emit_step, wrap
from timmx.c.emit.symbols import Symbols
from timmx.c.lower.ir import Step, StepKind


def c_string(s: str) -> str:
    """A C string literal (ASCII, escaped)."""
    return json.dumps(s, ensure_ascii=True)


def _step_comment(head: str, modules: list[str], tail: str, width: int = 100) -> list[str]:
    """``/* <head><m1> + <m2> + ...<tail> */``, indented for run(), broken only between modules
    when longer than ``width`` (continuation lines start with `` *``)."""
    parts = [m.replace("*/", "* /") for m in modules]
    parts[-1] += tail.replace("*/", "* /") + " */"
    lines = []
    line = "  /* " + head + parts[0]
    for part in parts[1:]:
        if len(line) + 3 + len(part) > width:
            lines.append(line + " +")
            line = "   *    " + part
        else:
            line += " + " + part
    lines.append(line)
    return lines


def step_label(step: Step) -> str:
    """What a step does, for its comment: ``conv [relu, bn folded]``, ``binary [add]``."""
    extra = []
    if step.kind is StepKind.CONV_PW_DW:
        pw = step.attrs["pw"]
        acts = [s.attrs.get("act", "NONE").lower() for s in (pw, step)]
        extra.append("1x1 " + acts[0] + ", dw " + acts[1])
        if step.attrs.get("residual_mode", "NONE") != "NONE":
            extra.append("residual")
        if step.attrs.get("folded") or pw.attrs.get("folded"):
            extra.append("bn folded")
    elif step.kind in (StepKind.CONV, StepKind.LINEAR):
        if step.attrs.get("act", "NONE") != "NONE":
            extra.append(step.attrs["act"].lower())
        if step.attrs.get("residual_mode", "NONE") != "NONE":
            extra.append("residual")
        if step.attrs.get("folded"):
            extra.append("bn folded")
        if step.attrs.get("gate_step") is not None:
            extra.append("se gate folded")
    elif step.kind in (StepKind.UNARY, StepKind.BINARY):
        extra.append(step.attrs["op"].lower())
    return str(step.kind) + (f" [{', '.join(extra)}]" if extra else "")


def step_where(step: Step) -> str:
    """The timm modules a step computes: ``conv1.0 (Conv2d) + conv1.1 (BatchNorm2d)``."""
    where = step.module or "(graph)"
    if step.attrs.get("also"):
        where += " + " + " + ".join(step.attrs["also"])
    return where


def step_profile_kind(step: Step) -> str:
    """The kind a profile groups a step under: its kind, convolutions split by shape
    (``conv_dw``, ``conv_1x1``, ``conv_kxk``, ``conv_winograd``); ``conv_pw_dw`` for the
    fused 1x1 -> depthwise steps."""
    if step.kind is not StepKind.CONV:
        return str(step.kind)
    d = descriptor(step)
    if d["groups"] == d["in_c"] == d["out_c"] and d["groups"] > 1:
        return "conv_dw"
    algo = d["algo"]
    if getattr(algo, "name", "DIRECT") == "WINOGRAD":
        return "conv_winograd"
    return "conv_1x1" if d["kh"] == d["kw"] == 1 else "conv_kxk"


def _conv_flops(d) -> int:
    per_out = d["in_c"] // d["groups"] * d["kh"] * d["kw"]
    return 2 * d["n"] * d["out_h"] * d["out_w"] * d["out_c"] * per_out


def step_flops(step: Step) -> int:
    """Floating-point operations of a step's arithmetic (a multiply-add is 2), counted for the
    matrix kinds (conv, linear, bmm, attention); 0 for the others."""
    matrix = (StepKind.CONV, StepKind.CONV_PW_DW, StepKind.LINEAR, StepKind.BMM)
    if step.kind not in (*matrix, StepKind.ATTENTION):
        return 0
    d = descriptor(step)
    if step.kind is StepKind.CONV_PW_DW:
        return _conv_flops(d["pw"]) + _conv_flops(d["dw"])
    if step.kind is StepKind.CONV:
        return _conv_flops(d)
    if step.kind is StepKind.LINEAR:
        return 2 * d["m"] * d["k"] * d["n"]
    if step.kind is StepKind.BMM:
        return 2 * d["batch"] * d["m"] * d["n"] * d["k"]
    return 4 * d["heads"] * d["seq"] * d["seq"] * d["head_dim"]


@dataclass
class ModelSource:
    """The generated pieces of ``<prefix>.c`` (template values)."""

    weights_map: str
    arena_map: str
    step_data: str
    run_locals: str
    run_setup: str
    body: str
    scratch_checks: str
    profile_names: str
    profile_kinds: str
    profile_flops: str


def model_source(steps: list[Step], sym: Symbols, P: str) -> ModelSource:
    """Emit every step; returns the template values of ``model.c.in``."""
    data: list[str] = []
    body: list[str] = []
    checks: list[str] = []
    names: list[str] = []
    args: list[str] = []  # every argument of every call (which locals run() needs)
    for i, step in enumerate(steps):
        code = emit_step(step, sym)
        label, where = step_label(step), step_where(step)
        shape = "x".join(str(s) for s in step.out.shape) if step.out is not None else ""
        names.append(label + " " + where)
        if code.data:
            data.extend(["", f"/* step {i} */", *code.data])
        args.extend(arg for call in code.calls for arg in call.args)
        if body:
            body.append("")
        body.extend(_step_comment(f"{i}: ", where.split(" + "), f": {label} -> {shape}"))
        for call in code.calls:
            body.extend(wrap(f"  TXM_STEP({i}, {call.fn}(", call.args, "));"))
        fn = SCRATCH_SIZE_FUNCTIONS.get(step.kind)
        if fn is not None:
            checks.append(f"  if ({fn}(&{code.desc}) > {int(step.scratch)}u) return {P}_ESCRATCH;")
    uses = {
        "ctx": "ctx" in args,
        "A": any(arg.startswith("ARENA(") for arg in args),
        "W": any(arg.startswith("WEIGHTS(") for arg in args),
    }
    decl = {
        "ctx": "  const txk_context* ctx;",
        "A": "  unsigned char* A;",
        "W": "  const unsigned char* W;",
    }
    setup = {
        "ctx": "  ctx = &m->kctx;",
        "A": "  A = m->arena;",
        "W": f"  W = m->weights + {P}_WEIGHTS_HEADER_SIZE;",
    }
    return ModelSource(
        weights_map="\n".join(sym.weights_map()) or "/* no weights */",
        arena_map="\n".join(sym.arena_map()) or "/* no arena buffers */",
        step_data="\n".join(data).strip("\n") or "/* no descriptors */",
        run_locals="\n".join(decl[k] for k in decl if uses[k]),
        run_setup="\n".join(setup[k] for k in setup if uses[k]),
        body="\n".join(body),
        scratch_checks="\n".join(checks) or "  /* no step needs scratch */",
        profile_names="\n".join(f"    {c_string(n)}," for n in names) or "    0",
        profile_kinds="\n".join(f"    {c_string(step_profile_kind(s))}," for s in steps) or "    0",
        profile_flops="\n".join(f"    {step_flops(s)}.0," for s in steps) or "    0",
    )


def labels_body(prefix: str, P: str, labels: list[str]) -> str:
    """The label table and ``<prefix>_label`` (or a stub returning NULL without labels)."""
    if not labels:
        return (
            f"const char* {prefix}_label(int i) {{\n"
            "  (void)i; /* the class names were not known at export */\n"
            "  return NULL;\n"
            "}\n"
        )
    table = ",\n".join("    " + c_string(x) for x in labels)
    return (
        f"static const char* const {prefix}_labels[{P}_NUM_LABELS] = {{\n{table}\n}};\n\n"
        f"const char* {prefix}_label(int i) {{\n"
        f"  if (i >= 0 && i < {P}_NUM_LABELS) return {prefix}_labels[i];\n"
        "  return NULL;\n"
        "}\n"
    )
