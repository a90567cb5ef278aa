"""The generated model loaded in-process (ctypes; what `timmx benchmark` times and --eval-data
runs) computes bitwise what the demo program computes, at any thread count, with weights in a
file or compiled in, and rejects an input of the wrong size."""

import numpy as np
import pytest
import torch
from conftest import custom_prepared

from timmx.c.build import find_compiler
from timmx.c.export import c_runner, export_c
from timmx.c.inprocess import inprocess_runner
from timmx.errors import ExportError

CC = find_compiler()
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc/gcc/clang) on PATH")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 24, 3, padding=1), torch.nn.BatchNorm2d(24), torch.nn.ReLU(),
        torch.nn.Conv2d(24, 24, 3, padding=1, groups=24), torch.nn.SiLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(24, 10),
    )  # fmt: skip
    with torch.no_grad():  # non-degenerate norm statistics
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("embed", [False, True], ids=["weights-file", "embedded"])
def test_inprocess_matches_demo_bitwise(tmp_path, embed) -> None:
    net = _net()
    prepared = custom_prepared(net, (3, 20, 20), num_classes=10, num_features=24)
    out = tmp_path / "out"
    export_c(prepared, out, prefix="tiny", embed_weights=embed)
    x = np.random.default_rng(0).standard_normal((1, 3, 20, 20)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy().reshape(-1)
    demo = c_runner(out, "tiny", tmp_path / "demo", cc=CC)(x)
    np.testing.assert_allclose(demo, ref, atol=1e-5, rtol=1e-5)
    for threads in (1, 2, 3):
        with inprocess_runner(
            out, "tiny", tmp_path / f"so{threads}", cc=CC, threads=threads
        ) as run:
            first, second = run(x), run(x)
            assert np.array_equal(first, demo), f"{threads} thread(s): in-process != demo"
            assert np.array_equal(second, first), "a second run differs from the first"
            with pytest.raises(ExportError, match="input floats"):
                run(np.zeros((2, 3, 20, 20), np.float32))
