"""Which popular timm architectures the C target exports and verifies.

    uv run python benchmarks/c_coverage.py                      # the whole list (slow)
    uv run python benchmarks/c_coverage.py --models resnet18 dla34
    uv run python benchmarks/c_coverage.py --jobs 2 --json coverage.json
    uv run python benchmarks/c_coverage.py --skip-optional --timeout 900
    uv run python benchmarks/c_coverage.py --markdown table.md  # the table of docs/c.md

Each model (live weights from :func:`timmx.testing.save_live_checkpoint`, or timm's random init
with --random-weights; batch 1, its default input size) is exported with
``timmx.export("c", name, output=tmpdir, checkpoint=..., verify_data=photos)`` in its own
subprocess with a timeout, so one hang or crash does not stop the sweep. The export compiles the
generated C and verifies it against PyTorch with timmx's default tolerance on real photos (the
scikit-learn/scikit-image photos of :func:`timmx.testing.write_photo_folder`) through the model's
eval transform. The table's columns and order are fixed:

    model  status  max_abs_err  params_M  export_s

status is ``ok``, ``unsupported <op>`` (the op the lowering cannot handle), ``verify failed``,
``timeout`` or ``error <ExceptionType>``; ``--verbose`` prints the full message of each failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

MODELS = [
    # ResNet family and relatives
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet50d", "resnext50_32x4d",
    "wide_resnet50_2", "seresnet50", "ecaresnet50d", "res2net50_26w_4s", "resnest14d",
    "densenet121", "dla34", "dpn68", "vgg11", "inception_v3", "xception41",
    # EfficientNet / MobileNet family
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "tf_efficientnet_b0", "efficientnetv2_rw_s", "tf_efficientnetv2_b0", "mobilenetv2_100",
    "mobilenetv3_small_100", "mobilenetv3_large_100", "mobilenetv4_conv_small",
    "mobilenetv4_conv_medium", "mobilenetv4_hybrid_medium", "mnasnet_100", "fbnetc_100",
    "ghostnet_100", "ghostnetv2_100", "hardcorenas_a", "lcnet_050", "tinynet_a",
    # RegNet, RepVGG-style, small CNNs
    "regnetx_002", "regnety_002", "regnety_004", "regnety_040", "rexnet_100", "repvgg_a0",
    "mobileone_s0", "fastvit_t8", "efficientvit_b0", "efficientvit_m0", "levit_128s",
    "edgenext_xx_small",
    # ConvNeXt and MetaFormers
    "convnext_atto", "convnext_tiny", "convnextv2_atto", "poolformer_s12", "poolformerv2_s12",
    "caformer_s18", "convformer_s18", "mambaout_femto",
    # Vision transformers
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
    "deit_tiny_patch16_224", "deit3_small_patch16_224", "beit_base_patch16_224",
    "eva02_tiny_patch14_224", "swin_tiny_patch4_window7_224", "swinv2_cr_tiny_ns_224",
    "maxvit_nano_rw_256", "coatnet_nano_rw_224", "crossvit_tiny_240", "cait_xxs24_224",
    "xcit_nano_12_p16_224", "pit_ti_224", "tnt_s_patch16_224", "twins_svt_small", "pvt_v2_b0",
    "mobilevit_xxs", "mobilevitv2_050", "efficientformer_l1", "efficientformerv2_s0",
    "tiny_vit_5m_224",
    # Others
    "nfnet_l0", "dm_nfnet_f0", "cspresnet50", "cspdarknet53", "darknet53", "hrnet_w18_small",
    "selecsls42b", "gernet_s", "resmlp_12_224", "mixer_s16_224", "gmlp_ti16_224",
    "sequencer2d_s",
]  # fmt: skip

# big or slow: skipped by --skip-optional
OPTIONAL = {"vit_base_patch16_224", "beit_base_patch16_224", "dm_nfnet_f0"}

UNSUPPORTED = re.compile(r"cannot lower (\S+)")


def worker(name: str, random_weights: bool) -> None:
    """Export one model (in this process) and print one JSON line with the outcome."""
    from pathlib import Path

    import torch

    import timmx
    from timmx._torch_env import import_timm
    from timmx.testing import write_photo_folder
    from timmx.testing.checkpoint import save_live_checkpoint

    timm = import_timm()  # torchvision's CUDA-only extension next to a CPU torch
    torch.manual_seed(0)
    out = {"model": name, "status": "error", "max_abs_err": None, "params_M": None}
    started = time.perf_counter()
    try:
        m = timm.create_model(name, pretrained=False)
        out["params_M"] = sum(p.numel() for p in m.parameters()) / 1e6
        del m
        with tempfile.TemporaryDirectory(prefix="timmx-cov-") as tmp:
            weights = {}
            if not random_weights:
                out["weights"] = "live"
                photos = write_photo_folder(Path(tmp) / "photos")
                weights = {
                    "checkpoint": str(save_live_checkpoint(name, Path(tmp))),
                    "verify_data": str(photos),
                }
            result = timmx.export("c", name, output=os.path.join(tmp, "out"), **weights)
        out["status"] = "ok"
        if result.verify is not None:
            out["max_abs_err"] = result.verify.max_abs_err
        out["steps"] = result.details.get("steps")
    except Exception as exc:
        message = str(exc)
        out["message"] = message[-3000:]
        match = UNSUPPORTED.search(message)
        report = getattr(exc, "report", None)
        if match:
            out["status"] = f"unsupported {match.group(1)}"
        elif type(exc).__name__ == "VerificationError":
            out["status"] = "verify failed"
            if report is not None:
                out["max_abs_err"] = report.max_abs_err
        else:
            out["status"] = f"error {type(exc).__name__}"
    out["export_s"] = time.perf_counter() - started
    print("@@RESULT " + json.dumps(out), flush=True)


def run_one(name: str, timeout: float, random_weights: bool) -> dict:
    """Run :func:`worker` in a subprocess; a hang becomes status ``timeout``."""
    started = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name]
    cmd += ["--random-weights"] if random_weights else []
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": name, "status": "timeout", "export_s": time.perf_counter() - started}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip()[-3000:]
    return {
        "model": name,
        "status": f"crashed (exit {proc.returncode})",
        "message": tail,
        "export_s": time.perf_counter() - started,
    }


def fmt_row(r: dict) -> str:
    """One fixed-width table row."""
    err = r.get("max_abs_err")
    params = r.get("params_M")
    return (
        f"{r['model']:<30} {r['status']:<44} "
        f"{(f'{err:.1e}' if err is not None else '-'):>11} "
        f"{(f'{params:.1f}' if params is not None else '-'):>8} "
        f"{r.get('export_s', 0.0):>8.1f}"
    )


def markdown_table(results: list[dict]) -> str:
    """The results as the Markdown table of docs/c.md (same columns as the printed one)."""
    lines = ["| model | status | max abs err | params (M) | export s |", "|---|---|---|---|---|"]
    for r in results:
        err, params = r.get("max_abs_err"), r.get("params_M")
        lines.append(
            f"| {r['model']} | {r['status']} | {f'{err:.1e}' if err is not None else '-'} | "
            f"{f'{params:.1f}' if params is not None else '-'} | {r.get('export_s', 0.0):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, run the sweep, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help="models to run (default: the built-in list)")
    ap.add_argument("--skip-optional", action="store_true", help="skip the big optional ones")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per model")
    ap.add_argument("--jobs", type=int, default=1, help="models exported at once")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    ap.add_argument("--verbose", action="store_true", help="print failure messages")
    ap.add_argument("--random-weights", action="store_true", help="timm's random init")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.random_weights)
        return
    models = args.models or [m for m in MODELS if not (args.skip_optional and m in OPTIONAL)]
    header = f"{'model':<30} {'status':<44} {'max_abs_err':>11} {'params_M':>8} {'export_s':>8}"
    print(header)
    print("-" * len(header), flush=True)
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {m: pool.submit(run_one, m, args.timeout, args.random_weights) for m in models}
        for m in models:  # print in list order, as each finishes
            r = futures[m].result()
            results[m] = r
            print(fmt_row(r), flush=True)
            if args.verbose and r["status"] != "ok" and r.get("message"):
                print("    " + r["message"].strip().replace("\n", "\n    ")[-1500:], flush=True)
    ok = sum(r["status"] == "ok" for r in results.values())
    print(f"\n{ok}/{len(results)} verified", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([results[m] for m in models], f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table([results[m] for m in models]))


if __name__ == "__main__":
    main()
