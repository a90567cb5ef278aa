"""Per-family evidence for timmx.testing.live_weights: residual branch/shortcut ratios and
logit ranges on real photos, random init vs live weights.

    uv run python benchmarks/live_weights_table.py [MODEL ...]

For each model: the minimum, over every residual add, of the smaller operand's norm over the
larger one's (a dead branch shows as ~0), and the largest |logit| on real photographs, before
(timm's random init) and after live_weights. Prints a Markdown table.
"""

import sys
import time

import torch

from timmx._torch_env import import_timm
from timmx.testing import live_weights, residual_ratios
from timmx.testing.images import photo_batch

MODELS = [
    "resnet50",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenetv3_large_100",
    "vit_small_patch16_224",
    "regnety_002",
    "repvgg_a0",
    "mobileone_s0",
    "fastvit_t8",
    "levit_128s",
    "swin_tiny_patch4_window7_224",
    "inception_v3",
]


def measure(name: str) -> str:
    timm = import_timm()
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    config = timm.data.resolve_data_config({}, model=model)
    size = tuple(int(v) for v in config["input_size"])
    x = photo_batch(size, config, 4, seed=123)  # not the calibration crops
    with torch.no_grad():
        before = model(x)
    ratios_before = residual_ratios(model, x)
    started = time.perf_counter()
    live_weights(model)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        after = model(x)
    ratios_after = residual_ratios(model, x)

    def low(ratios):
        return f"{min(r for _, r in ratios):.3g}" if ratios else "n/a"

    return (
        f"| {name} | {len(ratios_after)} | {low(ratios_before)} | {low(ratios_after)} | "
        f"{float(before.abs().max()):.3g} | {float(after.abs().max()):.3g} | "
        f"{float(after.std()):.2f} | {seconds:.1f} |"
    )


def main() -> None:
    names = sys.argv[1:] or MODELS
    print(
        "| model | residual adds | min ratio, random init | min ratio, live | "
        "max abs logit, random | max abs logit, live | logit std, live | live_weights s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        try:
            print(measure(name), flush=True)
        except Exception as exc:  # report and go on
            print(f"| {name} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} |")


if __name__ == "__main__":
    main()
