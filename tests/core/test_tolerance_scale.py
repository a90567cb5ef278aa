"""The absolute tolerance is in units of each sample's output scale (its max |ref|, at least 1)."""

import numpy as np

from timmx.core.tolerances import Tolerance
from timmx.core.verify import compare

FP32 = Tolerance(atol=1e-4, rtol=0.0, min_cosine=0.9999)


def test_atol_scales_with_each_samples_largest_output():
    ref = np.array([[20.0, -3.0, 0.0], [0.5, 0.2, 0.0]])
    out = ref.copy()
    out[0, 2] += 1.5e-3  # 20 * 1e-4 = 2e-3 allowed on the sample whose logits reach 20
    assert compare(ref, out, FP32).within_tolerance
    out[0, 2] += 1e-3  # 2.5e-3 > 2e-3
    assert not compare(ref, out, FP32).within_tolerance


def test_small_outputs_keep_the_plain_atol():
    ref = np.array([[20.0, -3.0, 0.0], [0.5, 0.2, 0.0]])
    out = ref.copy()
    out[1, 2] += 1.5e-3  # the second sample's scale is 1 (max |ref| 0.5): 1e-4 allowed
    figures = compare(ref, out, FP32)
    assert not figures.within_tolerance, figures
    out[1, 2] = 5e-5
    assert compare(ref, out, FP32).within_tolerance


def test_zero_atol_stays_exact():
    ref = np.array([[20.0, -3.0]])
    exact = Tolerance(atol=0.0, rtol=0.0, min_cosine=0.0)
    assert compare(ref, ref.copy(), exact).within_tolerance
    assert not compare(ref, ref + 1e-9, exact).within_tolerance


def test_top1_swap_within_the_tolerance_is_a_tie_not_a_failure():
    # ncnn's fp16 check asks top-1 agreement; two reference logits closer than the elementwise
    # bound lets them move may swap (live weights are untrained: near-ties are common)
    fp16 = Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.99, min_top1=1.0)
    ref = np.array([[3.0, 2.99, -1.0], [1.0, -2.0, 0.5]])
    out = ref.copy()
    out[0, :2] = [2.995, 2.996]  # swapped, each moved by 5e-3 (allowed: 0.05 * 3 + 0.05 * 3)
    figures = compare(ref, out, fp16)
    assert figures.top1_agree == 0.5 and figures.within_tolerance, figures
    # a swap the tolerance does not allow fails on top-1 even with a high cosine
    ref = np.array([[3.0, 2.0, -1.0] + [0.0] * 50, [1.0, -2.0, 0.5] + [0.0] * 50])
    out = ref.copy()
    out[0, :2] = [2.0, 3.0]
    tight = Tolerance(atol=None, rtol=0.0, min_cosine=0.5, min_top1=1.0)
    figures = compare(ref, out, tight)
    assert figures.top1_agree == 0.5 and not figures.within_tolerance, figures
    loose = Tolerance(atol=0.4, rtol=0.0, min_cosine=0.5, min_top1=1.0)  # bound 1.2 each
    assert compare(ref, out, loose).within_tolerance
    near = Tolerance(atol=0.1, rtol=0.0, min_cosine=0.5, min_top1=1.0)  # elementwise fails
    assert not compare(ref, out, near).within_tolerance
