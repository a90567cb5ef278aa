"""Numeric verification: run the artifact in its runtime and compare it with PyTorch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from timmx.core.tolerances import Tolerance, tolerance_for

Runner = Callable[["object"], "object"]  # numpy (N, C, H, W) float32 -> numpy output


@dataclass
class VerifyReport:
    """What verification found; ``checked`` is False where the runtime could not run here."""

    runtime: str
    checked: bool
    passed: bool | None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    cosine: float | None = None
    top1_agree: float | None = None
    batch_sizes: tuple[int, ...] = ()
    precision: str = "fp32"
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    note: str | None = None
    # Where the runtime's default precision differs from the one verified (OpenVINO's CPU
    # plugin computes in bf16 on CPUs with native bf16 unless told f32): that precision and its
    # max abs error vs PyTorch.
    default_precision: str | None = None
    default_max_abs_err: float | None = None
    inputs: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        return data

    def failure(self) -> str:
        """A sentence naming the figures that are out of tolerance."""
        return (
            f"{self.runtime} output differs from PyTorch beyond the {self.precision} tolerance: "
            f"max abs err {self.max_abs_err:.3g} (atol {self.atol}, rtol {self.rtol}), "
            f"cosine {self.cosine:.6f} (min {self.min_cosine}), "
            f"top-1 agreement {self.top1_agree:.0%}."
        )


@dataclass
class Figures:
    """Differences between one candidate output and its reference."""

    max_abs_err: float
    max_rel_err: float
    cosine: float
    top1_agree: float
    within_tolerance: bool


def compare(reference, candidate, tolerance: Tolerance) -> Figures:
    """Compare two outputs of shape (N, ...).

    ``max_rel_err`` is the largest ``|out - ref| / |ref|`` over elements whose ``|ref|`` exceeds
    1e-3 of the output's largest magnitude (relative error is meaningless near zero); cosine is
    the minimum over samples; top-1 agreement is the fraction of samples whose argmax agrees.
    Within tolerance: every element has ``|out - ref| <= atol * scale + rtol * |ref|``, where
    ``scale`` is its sample's largest ``|ref|`` (at least 1), and the cosine (and top-1) minimums;
    the top-1 minimum excuses swaps the elementwise bound allows (:func:`_top1_beyond_ties`).
    """
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        if ref.size == out.size:
            out = out.reshape(ref.shape)
        else:
            raise ValueError(f"output shape {out.shape} differs from PyTorch's {ref.shape}")
    diff = np.abs(out - ref)
    finite = bool(np.isfinite(out).all())
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    significant = np.abs(ref) > 1e-3 * scale
    max_rel = (
        float((diff[significant] / np.abs(ref[significant])).max()) if significant.any() else 0.0
    )
    n = ref.shape[0] if ref.ndim else 1
    r2, o2 = ref.reshape(n, -1), out.reshape(n, -1)
    norms = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    dots = (r2 * o2).sum(axis=1)
    cos = np.where(norms > 0, dots / np.maximum(norms, 1e-300), (diff.reshape(n, -1).max(1) == 0))
    cosine = float(cos.min()) if finite else float("nan")
    top1 = float((r2.argmax(axis=1) == o2.argmax(axis=1)).mean())
    ok = finite and cosine >= tolerance.min_cosine
    bound = None
    if tolerance.atol is not None:
        # atol is in units of each sample's output scale (its max |ref|, at least 1): float error
        # grows with the magnitude of what is computed, and real logits reach 10-300
        scale = np.maximum(np.abs(r2).max(axis=1, keepdims=True), 1.0) if r2.size else 1.0
        bound = tolerance.atol * scale + tolerance.rtol * np.abs(r2)
        ok = ok and bool((diff.reshape(n, -1) <= bound).all())
    if tolerance.min_top1 is not None:
        ok = ok and _top1_beyond_ties(r2, o2, bound) >= tolerance.min_top1
    if not finite:
        max_abs = max_rel = float("nan")
    return Figures(max_abs, max_rel, cosine, top1, ok)


def _top1_beyond_ties(ref, out, bound) -> float:
    """Top-1 agreement for the ``min_top1`` check, where a swap of two classes whose reference
    values are closer than the tolerance lets two elements move (``bound[top] + bound[chosen]``)
    counts as agreeing: the tolerance does not decide their order. Untrained (live) weights
    give such near-ties; vit_tiny's ncnn fp16 swapped two logits 0.01 apart on one photo."""
    import numpy as np

    rows = np.arange(ref.shape[0])
    top, chosen = ref.argmax(axis=1), out.argmax(axis=1)
    agree = top == chosen
    if bound is not None:
        bound = np.broadcast_to(bound, ref.shape)
        margin = ref[rows, top] - ref[rows, chosen]
        agree |= margin <= bound[rows, top] + bound[rows, chosen]
    return float(agree.mean())


def verification_batch_sizes(batch_size: int, dynamic_batch: bool) -> tuple[int, ...]:
    """The sample batch, plus a second size when the artifact has a dynamic batch dimension."""
    return (batch_size, batch_size + 1) if dynamic_batch else (batch_size,)


VERIFY_IMAGES = 16
NOISE = "seeded random images"


def input_batches(job, batch_sizes: Sequence[int]) -> list:
    """Verification inputs: real images when the job has them (--verify-data, or images held
    out of --calibration-data), else seeded random images in the graph's input range.

    With images, the first batch size repeats until every image was seen once; each further
    size (a dynamic batch) gets one batch.
    """
    prepared = job.model
    images = getattr(job, "verify_images", None)
    if images is None:
        return [prepared.sample_input(size) for size in batch_sizes]
    count = int(images.shape[0])
    first, *rest = batch_sizes
    sizes = [first] * max(1, -(-count // first)) + list(rest)
    batches, offset = [], 0
    for size in sizes:
        rows = [(offset + k) % count for k in range(size)]
        offset += size
        batches.append(images[rows].to(prepared.device))
    return batches


def inputs_description(job) -> str:
    """What verification ran on (for the report)."""
    return getattr(job, "verify_source", None) or NOISE


def verify_with_runner(
    job,
    runner: Runner,
    runtime: str,
    *,
    batch_sizes: Sequence[int] | None = None,
    inputs: Sequence[object] | None = None,
    note: str | None = None,
) -> VerifyReport:
    """Run ``runner`` and the PyTorch model on the same inputs and compare.

    ``inputs`` (torch tensors) replace the default, :func:`input_batches` for ``batch_sizes``
    (default: the export batch size): real images when the job has them, else seeded noise.
    """
    prepared = job.model
    precision = job.backend.precision(job)
    tolerance = tolerance_for(job.backend.name, precision, job.common.atol, job.common.rtol)
    if inputs is None:
        sizes = tuple(batch_sizes or (prepared.batch_size,))
        inputs = input_batches(job, sizes)
    worst: Figures | None = None
    passed = True
    agreeing = samples = 0.0
    for x in inputs:
        reference = prepared.run(x).float().cpu().numpy()
        candidate = runner(x.float().cpu().numpy())
        figures = compare(reference, candidate, tolerance)
        passed = passed and figures.within_tolerance
        worst = figures if worst is None else _worst(worst, figures)
        agreeing += figures.top1_agree * x.shape[0]
        samples += x.shape[0]
    assert worst is not None
    worst.top1_agree = agreeing / samples  # pooled over every sample, not the worst batch
    return VerifyReport(
        runtime=runtime,
        checked=True,
        passed=passed,
        max_abs_err=worst.max_abs_err,
        max_rel_err=worst.max_rel_err,
        cosine=worst.cosine,
        top1_agree=worst.top1_agree,
        batch_sizes=tuple(int(x.shape[0]) for x in inputs),
        precision=precision,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        min_cosine=tolerance.min_cosine,
        note=note,
        inputs=inputs_description(job),
    )


def _worst(a: Figures, b: Figures) -> Figures:
    return Figures(
        max_abs_err=max(a.max_abs_err, b.max_abs_err),
        max_rel_err=max(a.max_rel_err, b.max_rel_err),
        cosine=min(a.cosine, b.cosine),
        top1_agree=min(a.top1_agree, b.top1_agree),
        within_tolerance=a.within_tolerance and b.within_tolerance,
    )


def unchecked(runtime: str, reason: str, precision: str = "fp32") -> VerifyReport:
    """A report for an artifact whose numerics cannot be checked on this machine."""
    return VerifyReport(
        runtime=runtime, checked=False, passed=None, precision=precision, note=reason
    )
