"""The one ctypes mirror of the kernel library's public header, ``timmx_kernels.h``.

Everything in Python that calls the compiled kernel library goes through this module: the
exporter (scratch sizes, ``c/build.py``), the kernel tests (``tests/c/kernels/txk_ctypes.py``)
and the kernel benchmarks. ``tests/c/test_c_abi.py`` compiles a C program against the real
header and checks every struct's size and field offsets, every enumerator's value and every
function's arity and argument types against this file, so a header change that is not
mirrored here fails there (not as a wrong scratch size on a user's machine).

Pointers to float data are ``c_void_p`` (pass ``array.ctypes.data_as(c_void_p)``).
"""

import ctypes as C

VERSION_MAJOR = 0
VERSION_MINOR = 6
BLOCK = 16  # TXK_BLOCK: output channels per packed weight block
ALIGN = 64  # TXK_ALIGN: alignment of packed weights and scratch (bytes)
MAX_DIMS = 6  # TXK_MAX_DIMS (txk_permute)
WEIGHTS_VERSION = 1  # TXK_WEIGHTS_VERSION
WEIGHTS_HEADER_SIZE = 64  # TXK_WEIGHTS_HEADER_SIZE
MAX_THREADS = 64  # TXK_MAX_THREADS
THREADPOOL_BYTES = 2048  # TXK_THREADPOOL_BYTES (sizeof(txk_threadpool))

# -- enums: {suffix: value}; the C enumerator is the prefix + the suffix ---------------------
STATUS = {  # TXK_<name>
    "OK": 0,
    "EINVAL": -1,
    "EUNSUPPORTED": -2,
    "EALIGN": -3,
    "ETHREAD": -4,
    "EWEIGHTS_SIZE": -10,
    "EWEIGHTS_MAGIC": -11,
    "EWEIGHTS_VERSION": -12,
    "EWEIGHTS_CHECKSUM": -13,
    "EWEIGHTS_MODEL": -14,
}
ISA = {"SCALAR": 0, "AVX2": 1, "AVX512": 2, "NEON": 3, "AUTO": 99}  # TXK_ISA_<name>
FAMILY = {
    "GEMM": 0,
    "DWCONV": 1,
    "VUNARY": 2,
    "ROWOP": 3,
    "WINO": 4,
    "COUNT": 5,
}  # TXK_FAMILY_<name>
ACT = {  # TXK_ACT_<name>
    "NONE": 0,
    "RELU": 1,
    "CLAMP": 2,
    "HARDSWISH": 3,
    "HARDSIGMOID": 4,
    "SILU": 5,
    "GELU": 6,
    "GELU_TANH": 7,
    "SIGMOID": 8,
    "TANH": 9,
    "COUNT": 10,
}
RESIDUAL = {"NONE": 0, "BEFORE_ACT": 1, "AFTER_ACT": 2}  # TXK_RESIDUAL_<name>
BINOP = {"ADD": 0, "SUB": 1, "MUL": 2, "DIV": 3, "MAX": 4, "MIN": 5}  # TXK_BIN_<name>
CONV_ALGO = {"DIRECT": 0, "WINOGRAD": 1}  # TXK_CONV_<name>

# C enum prefix of each table (the ABI test reads every enumerator through it)
ENUMS = {
    "TXK_": STATUS,
    "TXK_ISA_": ISA,
    "TXK_FAMILY_": FAMILY,
    "TXK_ACT_": ACT,
    "TXK_RESIDUAL_": RESIDUAL,
    "TXK_BIN_": BINOP,
    "TXK_CONV_": CONV_ALGO,
}
FAMILY_COUNT = FAMILY["COUNT"]

# C enums are ints in every ABI the library targets
c_enum = C.c_int


# -- structs (field order and types exactly as in the header) --------------------------------
class Epilogue(C.Structure):
    """txk_epilogue"""

    _fields_ = [
        ("act", c_enum),
        ("act_min", C.c_float),
        ("act_max", C.c_float),
        ("residual", c_enum),
    ]


class UkernelInfo(C.Structure):
    """txk_ukernel_info"""

    _fields_ = [
        ("name", C.c_char_p),
        ("isa", c_enum),
        ("mr", C.c_int),
        ("nr", C.c_int),
        ("fn", C.c_void_p),
    ]


class Context(C.Structure):
    """txk_context"""

    _fields_ = [
        ("isa", c_enum),
        ("ukernel", C.POINTER(UkernelInfo) * FAMILY_COUNT),
        ("pool", C.c_void_p),  # txk_threadpool*
    ]


class ThreadPool(C.Structure):
    """txk_threadpool (opaque storage: allocate it, pass a pointer, never copy it)"""

    _fields_ = [("opaque_", C.c_longdouble * (THREADPOOL_BYTES // C.sizeof(C.c_longdouble)))]


class Conv2dDesc(C.Structure):
    """txk_conv2d_desc"""

    _fields_ = [
        (name, C.c_int)
        for name in (
            "n",
            "in_h",
            "in_w",
            "in_c",
            "out_h",
            "out_w",
            "out_c",
            "kh",
            "kw",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "pad_bottom",
            "pad_right",
            "dil_h",
            "dil_w",
            "groups",
            "x_stride",
            "y_stride",
            "r_stride",
        )
    ] + [("epilogue", Epilogue), ("algo", c_enum)]


class PwDwDesc(C.Structure):
    """txk_pwdw_desc"""

    _fields_ = [("pw", Conv2dDesc), ("dw", Conv2dDesc)]


class LinearDesc(C.Structure):
    """txk_linear_desc"""

    _fields_ = [(name, C.c_int) for name in ("m", "k", "n", "lda", "ldy", "ldr")] + [
        ("epilogue", Epilogue)
    ]


class BmmDesc(C.Structure):
    """txk_bmm_desc"""

    _fields_ = (
        [(name, C.c_int) for name in ("batch", "m", "n", "k")]
        + [
            (name, C.c_long)
            for name in ("a_sb", "a_sm", "a_sk", "b_sb", "b_sk", "b_sn", "c_sb", "c_sm")
        ]
        + [("alpha", C.c_float)]
    )


class AttentionDesc(C.Structure):
    """txk_attention_desc"""

    _fields_ = [
        (name, C.c_int) for name in ("seq", "heads", "head_dim", "qkv_stride", "out_stride")
    ] + [("scale", C.c_float)]


class Pool2dDesc(C.Structure):
    """txk_pool2d_desc"""

    _fields_ = [
        (name, C.c_int)
        for name in (
            "n",
            "in_h",
            "in_w",
            "c",
            "out_h",
            "out_w",
            "kh",
            "kw",
            "stride_h",
            "stride_w",
            "pad_h",
            "pad_w",
            "dil_h",
            "dil_w",
            "count_include_pad",
            "divisor_override",
            "x_stride",
            "y_stride",
        )
    ]


class BinaryDesc(C.Structure):
    """txk_binary_desc"""

    _fields_ = (
        [("op", c_enum)]
        + [
            (name, C.c_size_t)
            for name in ("n", "p", "c", "a_sn", "a_sp", "a_sc", "b_sn", "b_sp", "b_sc")
        ]
        + [("y_sn", C.c_size_t), ("y_sp", C.c_size_t), ("epilogue", Epilogue)]
    )


class WeightsExpect(C.Structure):
    """txk_weights_expect"""

    _fields_ = [
        ("version", C.c_uint32),
        ("header_size", C.c_uint32),
        ("payload_size", C.c_uint64),
        ("layout_id", C.c_uint64),
    ]


# C typedef name -> mirror
STRUCTS: dict[str, type[C.Structure]] = {
    "txk_epilogue": Epilogue,
    "txk_ukernel_info": UkernelInfo,
    "txk_context": Context,
    "txk_threadpool": ThreadPool,
    "txk_conv2d_desc": Conv2dDesc,
    "txk_pwdw_desc": PwDwDesc,
    "txk_linear_desc": LinearDesc,
    "txk_bmm_desc": BmmDesc,
    "txk_attention_desc": AttentionDesc,
    "txk_pool2d_desc": Pool2dDesc,
    "txk_binary_desc": BinaryDesc,
    "txk_weights_expect": WeightsExpect,
}


# -- functions: name -> (restype, argtypes) --------------------------------------------------
def _p(struct: type[C.Structure]):
    return C.POINTER(struct)


_vp, _sz, _f, _i = C.c_void_p, C.c_size_t, C.c_float, C.c_int
_ctx = _p(Context)

FUNCTIONS: dict[str, tuple[object, list]] = {
    "txk_status_string": (C.c_char_p, [_i]),
    "txk_isa_supported": (_i, [c_enum]),
    "txk_isa_name": (C.c_char_p, [c_enum]),
    "txk_ukernel_count": (_sz, [c_enum]),
    "txk_ukernel_get": (_p(UkernelInfo), [c_enum, _sz]),
    "txk_context_init": (_i, [_ctx, c_enum]),
    "txk_context_set_ukernel": (_i, [_ctx, c_enum, _sz]),
    "txk_context_set_threadpool": (_i, [_ctx, _p(ThreadPool)]),
    "txk_context_threads": (_i, [_ctx]),
    # threads
    "txk_threadpool_init": (_i, [_p(ThreadPool), _i]),
    "txk_threadpool_destroy": (None, [_p(ThreadPool)]),
    "txk_threadpool_threads": (_i, [_p(ThreadPool)]),
    "txk_online_cpus": (_i, []),
    "txk_threadpool_size": (_sz, []),
    # conv2d
    "txk_conv2d_check": (_i, [_p(Conv2dDesc)]),
    "txk_conv2d_packed_size": (_sz, [_p(Conv2dDesc)]),
    "txk_conv2d_scratch_size": (_sz, [_p(Conv2dDesc)]),
    "txk_conv2d": (_i, [_ctx, _p(Conv2dDesc), _vp, _vp, _vp, _vp, _vp]),
    "txk_ref_conv2d": (_i, [_p(Conv2dDesc), _vp, _vp, _vp, _vp, _vp]),
    "txk_pwdw_check": (_i, [_p(PwDwDesc)]),
    "txk_pwdw_scratch_size": (_sz, [_p(PwDwDesc)]),
    "txk_conv2d_pw_dw": (_i, [_ctx, _p(PwDwDesc), _vp, _vp, _vp, _vp, _vp, _vp]),
    # linear, bmm, attention
    "txk_linear_packed_size": (_sz, [_p(LinearDesc)]),
    "txk_linear": (_i, [_ctx, _p(LinearDesc), _vp, _vp, _vp, _vp]),
    "txk_ref_linear": (_i, [_p(LinearDesc), _vp, _vp, _vp, _vp, _vp]),
    "txk_bmm_scratch_size": (_sz, [_p(BmmDesc)]),
    "txk_bmm": (_i, [_ctx, _p(BmmDesc), _vp, _vp, _vp, _vp]),
    "txk_ref_bmm": (_i, [_p(BmmDesc), _vp, _vp, _vp]),
    "txk_attention_scratch_size": (_sz, [_p(AttentionDesc)]),
    "txk_attention": (_i, [_ctx, _p(AttentionDesc), _vp, _vp, _vp, _vp, _vp]),
    "txk_ref_attention": (_i, [_p(AttentionDesc), _vp, _vp, _vp, _vp]),
    # normalisation and softmax
    "txk_layernorm": (_i, [_ctx, _sz, _sz, _vp, _sz, _vp, _sz, _vp, _vp, _f]),
    "txk_ref_layernorm": (_i, [_sz, _sz, _vp, _sz, _vp, _sz, _vp, _vp, _f]),
    "txk_groupnorm": (_i, [_ctx, _sz, _sz, _sz, _sz, _vp, _vp, _vp, _vp, _f]),
    "txk_ref_groupnorm": (_i, [_sz, _sz, _sz, _sz, _vp, _vp, _vp, _vp, _f]),
    "txk_softmax": (_i, [_ctx, _sz, _sz, _vp, _sz, _vp, _sz]),
    "txk_ref_softmax": (_i, [_sz, _sz, _vp, _sz, _vp, _sz]),
    # reductions and pooling
    "txk_global_avgpool": (_i, [_ctx, _sz, _sz, _sz, _vp, _vp]),
    "txk_mean_channels": (_i, [_ctx, _sz, _sz, _vp, _vp]),
    "txk_maxpool2d": (_i, [_ctx, _p(Pool2dDesc), _vp, _vp]),
    "txk_avgpool2d": (_i, [_ctx, _p(Pool2dDesc), _vp, _vp]),
    "txk_adaptive_avgpool2d": (_i, [_ctx, _p(Pool2dDesc), _vp, _vp]),
    # elementwise
    "txk_binary": (_i, [_ctx, _p(BinaryDesc), _vp, _vp, _vp]),
    "txk_ref_binary": (_i, [_p(BinaryDesc), _vp, _vp, _vp]),
    "txk_unary": (_i, [_ctx, c_enum, _f, _f, _sz, _vp, _vp]),
    "txk_ref_unary": (_i, [c_enum, _f, _f, _sz, _vp, _vp]),
    "txk_channel_scale": (_i, [_ctx, _sz, _sz, _sz, _vp, _vp, c_enum, _vp]),
    "txk_gate_weights": (_i, [_ctx, _sz, _sz, _vp, _vp, c_enum, _vp]),
    # data movement
    "txk_copy2d": (_i, [_sz, _sz, _vp, _sz, _vp, _sz]),
    "txk_concat_channels": (_i, [_sz, _sz, C.POINTER(_vp), C.POINTER(_sz), _vp]),
    "txk_permute": (_i, [_sz, C.POINTER(_sz), C.POINTER(_sz), _vp, _vp]),
    "txk_pad_nhwc": (_i, [_sz, _sz, _sz, _sz, _sz, _sz, _sz, _sz, _f, _vp, _vp]),
    # vectorised transcendentals
    "txk_vexp": (_i, [_ctx, _sz, _vp, _vp]),
    "txk_verf": (_i, [_ctx, _sz, _vp, _vp]),
    "txk_vtanh": (_i, [_ctx, _sz, _vp, _vp]),
    "txk_vsigmoid": (_i, [_ctx, _sz, _vp, _vp]),
    # weights blob
    "txk_weights_check": (_i, [_vp, _sz, _p(WeightsExpect)]),
    "txk_weights_fletcher64": (C.c_uint64, [_vp, _sz]),
}


def declare(lib: C.CDLL) -> C.CDLL:
    """Set ``restype`` / ``argtypes`` of every public function of a loaded kernel library."""
    for name, (restype, argtypes) in FUNCTIONS.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
    return lib
