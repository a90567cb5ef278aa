"""The ctypes mirror of the kernel library (timmx.c.abi) matches the real header: struct sizes,
field offsets and sizes, enumerator values, constants, and every function's signature; and the
exporter's descriptors go through it (a mismatch fails here, not on a user's machine)."""

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from timmx.c import abi
from timmx.c.build import find_compiler

KERNELS = Path(abi.__file__).resolve().parent / "kernels"
HEADER = KERNELS / "include" / "timmx_kernels.h"
CC = find_compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (gcc or clang)")

CONSTANTS = {
    "TXK_VERSION_MAJOR": abi.VERSION_MAJOR,
    "TXK_VERSION_MINOR": abi.VERSION_MINOR,
    "TXK_BLOCK": abi.BLOCK,
    "TXK_ALIGN": abi.ALIGN,
    "TXK_MAX_DIMS": abi.MAX_DIMS,
    "TXK_WEIGHTS_VERSION": abi.WEIGHTS_VERSION,
    "TXK_WEIGHTS_HEADER_SIZE": abi.WEIGHTS_HEADER_SIZE,
}


def _enumerators() -> dict[str, int]:
    return {prefix + name: v for prefix, table in abi.ENUMS.items() for name, v in table.items()}


def _probe_source() -> str:
    """A C program printing ``key value`` for every layout figure and value the mirror claims."""
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        '#include "timmx_kernels.h"',
        "int main(void) {",
    ]
    for cname, mirror in abi.STRUCTS.items():
        lines.append(f'  printf("sizeof {cname} %lu\\n", (unsigned long)sizeof({cname}));')
        for field, _ in mirror._fields_:
            lines.append(
                f'  printf("offsetof {cname}.{field} %lu\\n", '
                f"(unsigned long)offsetof({cname}, {field}));"
            )
            lines.append(
                f'  printf("sizeof {cname}.{field} %lu\\n", '
                f"(unsigned long)sizeof((({cname}*)0)->{field}));"
            )
    for name in [*_enumerators(), *CONSTANTS]:
        lines.append(f'  printf("value {name} %ld\\n", (long)({name}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, int]:
    if CC is None:
        pytest.skip("needs a C compiler (gcc or clang)")
    work = tmp_path_factory.mktemp("abi")
    src, exe = work / "probe.c", work / "probe"
    src.write_text(_probe_source())
    build = subprocess.run(
        [*CC, "-std=c99", "-Wall", "-Werror", f"-I{HEADER.parent}", str(src), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"the probe does not compile:\n{build.stderr[-3000:]}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}


@needs_cc
def test_struct_layouts_match_the_header(measured) -> None:
    wrong = []
    for cname, mirror in abi.STRUCTS.items():
        if measured[f"sizeof {cname}"] != ctypes.sizeof(mirror):
            wrong.append(
                f"sizeof {cname}: C {measured[f'sizeof {cname}']}, ctypes {ctypes.sizeof(mirror)}"
            )
        for field, _ in mirror._fields_:
            desc = getattr(mirror, field)
            for what, got in (("offsetof", desc.offset), ("sizeof", desc.size)):
                key = f"{what} {cname}.{field}"
                if measured[key] != got:
                    wrong.append(f"{key}: C {measured[key]}, ctypes {got}")
    assert not wrong, "timmx.c.abi does not match timmx_kernels.h:\n" + "\n".join(wrong)


@needs_cc
def test_enumerators_and_constants_match_the_header(measured) -> None:
    expected = {**_enumerators(), **CONSTANTS}
    wrong = [
        f"{name}: C {measured[f'value {name}']}, mirror {v}"
        for name, v in expected.items()
        if measured[f"value {name}"] != v
    ]
    assert not wrong, "enumerators / constants differ:\n" + "\n".join(wrong)


def test_every_enumerator_of_the_header_is_mirrored() -> None:
    text = HEADER.read_text()
    declared = set()
    for body in re.findall(r"typedef enum \w+ \{(.*?)\}", text, re.S):
        declared |= set(re.findall(r"^\s*(TXK_\w+)\s*=", body, re.M))
    missing = declared - set(_enumerators())
    extra = set(_enumerators()) - declared
    assert not missing, f"enumerators missing from timmx.c.abi: {sorted(missing)}"
    assert not extra, f"timmx.c.abi has enumerators the header lacks: {sorted(extra)}"


def _ctype_of(c_type: str):
    """The ctypes type the mirror should use for a C type of the header."""
    t = " ".join(c_type.replace("*", " * ").split())
    scalars = {
        "void": None,
        "int": ctypes.c_int,
        "size_t": ctypes.c_size_t,
        "float": ctypes.c_float,
        "uint64_t": ctypes.c_uint64,
        "txk_isa": abi.c_enum,
        "txk_family": abi.c_enum,
        "txk_act": abi.c_enum,
        "const char *": ctypes.c_char_p,
        "const float * const *": ctypes.POINTER(ctypes.c_void_p),
        "const size_t *": ctypes.POINTER(ctypes.c_size_t),
    }
    if t in scalars:
        return scalars[t]
    m = re.fullmatch(r"(?:const )?(\w+) \*", t)
    if m and m.group(1) in abi.STRUCTS:
        return ctypes.POINTER(abi.STRUCTS[m.group(1)])
    if m and m.group(1) in ("float", "void"):
        return ctypes.c_void_p
    raise AssertionError(f"no ctypes rule for the C type {c_type!r}")


def _prototypes() -> dict[str, tuple[str, list[str]]]:
    """name -> (return type, [argument types]) of every function the header declares."""
    text = re.sub(r"/\*.*?\*/", " ", HEADER.read_text(), flags=re.S)
    protos = {}
    for ret, name, params in re.findall(r"([\w ]+?\**)\s*\b(txk_\w+)\s*\(([^;{]*?)\)\s*;", text):
        ret = " ".join(ret.replace("*", " * ").split())
        args = [] if params.strip() in ("", "void") else [p.strip() for p in params.split(",")]
        types = [re.sub(r"\s*\b\w+$", "", " ".join(a.split())) for a in args]
        protos[name] = (ret, types)
    return protos


def test_every_function_of_the_header_is_mirrored_with_its_signature() -> None:
    protos = _prototypes()
    assert len(protos) > 30, f"the header parse found only {sorted(protos)}"
    assert set(protos) == set(abi.FUNCTIONS), (
        f"missing from timmx.c.abi: {sorted(set(protos) - set(abi.FUNCTIONS))}; "
        f"not in the header: {sorted(set(abi.FUNCTIONS) - set(protos))}"
    )
    wrong = []
    for name, (ret, args) in protos.items():
        restype, argtypes = abi.FUNCTIONS[name]
        if _ctype_of(ret) != restype:
            wrong.append(f"{name}: returns {ret}, mirror {restype}")
        want = [_ctype_of(a) for a in args]
        if want != list(argtypes):
            wrong.append(f"{name}: takes ({', '.join(args)}), mirror {argtypes}")
    assert not wrong, "function signatures differ:\n" + "\n".join(wrong)


def test_descriptors_must_name_the_mirrored_fields_in_order() -> None:
    from timmx.c.descriptors import Desc

    fields = tuple((name, 0) for name, _ in abi.AttentionDesc._fields_)
    assert Desc("txk_attention_desc", fields).to_ctypes().seq == 0
    with pytest.raises(ValueError, match="do not match the ABI"):
        Desc("txk_attention_desc", tuple(reversed(fields)))


@needs_cc
def test_scratch_sizes_come_from_the_library_through_the_mirror() -> None:
    """A padded conv and a bmm: the exporter's sizer (descriptor -> ctypes -> library) returns
    the library's documented sizes."""
    from timmx.c.build import scratch_sizer
    from timmx.c.lower.ir import Buffer, Ref, Step, StepKind, contiguous_strides, nhwc_strides

    def ref(shape, strides=None):
        strides = strides or nhwc_strides(shape)
        return Ref(shape, strides, Buffer(nfloats=1 << 20, kind="arena", name="t"))

    conv = Step(
        kind=StepKind.CONV,
        ins=[ref((1, 8, 10, 12))],
        out=ref((1, 16, 10, 14)),
        attrs={
            "kh": 3,
            "kw": 3,
            "stride": (1, 1),
            "pad": [1, 2, 1, 2],
            "dilation": (1, 1),
            "groups": 1,
            "act": "RELU",
            "residual_mode": "NONE",
        },
    )
    size = scratch_sizer(CC)
    padded = (10 + 1 + 1) * (12 + 2 + 2) * 8 * 4
    assert size(conv) == -(-padded // 64) * 64, "conv scratch differs from the header's rule"
    shape_a, shape_b = (2, 5, 7), (2, 7, 9)
    bmm = Step(
        kind=StepKind.BMM,
        ins=[ref(shape_a, contiguous_strides(shape_a)), ref(shape_b, contiguous_strides(shape_b))],
        out=ref((2, 5, 9), contiguous_strides((2, 5, 9))),
        attrs={"alpha": 1.0},
    )
    assert size(bmm) > 0, "a bmm needs scratch for its packed B"
    assert scratch_sizer(None)(bmm) >= size(bmm), "the estimate without a compiler is too small"
