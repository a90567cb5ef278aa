#!/usr/bin/env bash
# GPU check of timmx's TensorRT backend, ready to run on a machine with an NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]            # python3 on PATH, PYTHONPATH=src
#   uv run --no-sync bash benchmarks/gpu_check.sh out  # the repo's venv (must have CUDA torch)
#   PYTHON=/path/to/python3 bash benchmarks/gpu_check.sh out
#
# OUT_DIR: $1, else $OUT, else ./gpu_check_out. For each model (mobilenetv3_large_100,
# vit_tiny_patch16_224, resnet50; live weights from timmx.testing, real photos for verification
# and int8 calibration, nothing downloaded) it builds TensorRT engines fp32, fp16 and int8 (Q/DQ)
# with `timmx export tensorrt ... --device cuda` (each verified in TensorRT's runtime), exports
# the ONNX file for onnxruntime's CUDA provider, then times PyTorch CUDA eager, onnxruntime CUDA
# and the engines (median and p90 ms at each batch of GPU_CHECK_BATCHES) with
# benchmarks/gpu_check.py. Writes gpu_check.log, summary.md, summary.json, the artifacts.
#
# Exit status: 0 no failure (rows that cannot run here, e.g. without tensorrt, are reported as
# "not run: ..."), 1 an export, a verification or a timing failed, 2 no usable NVIDIA GPU.
# Environment: PYTHON (python3), GPU_CHECK_MODELS, GPU_CHECK_BATCHES (1,8; one engine with a
# dynamic profile covers them), GPU_CHECK_BUDGET_S (540: whole run), GPU_CHECK_STEP_TIMEOUT_S
# (240: one export), GPU_CHECK_RUNS (50), GPU_CHECK_WARMUP (10).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-./gpu_check_out}}"
PYTHON="${PYTHON:-python3}"
MODELS="${GPU_CHECK_MODELS:-mobilenetv3_large_100 vit_tiny_patch16_224 resnet50}"
BATCHES="${GPU_CHECK_BATCHES:-1,8}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-540}"
STEP_TIMEOUT_S="${GPU_CHECK_STEP_TIMEOUT_S:-240}"
RUNS="${GPU_CHECK_RUNS:-50}"
WARMUP="${GPU_CHECK_WARMUP:-10}"
HELPER="$ROOT/benchmarks/gpu_check.py"

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
STEPS="$OUT_DIR/steps"
ARTIFACTS="$OUT_DIR/artifacts"
mkdir -p "$STEPS" "$ARTIFACTS"
rm -f "$STEPS"/* "$OUT_DIR/timings.json"
LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

START="$(date +%s)"
DEADLINE=$((START + BUDGET_S))
EXPORT_DEADLINE=$((DEADLINE - 100)) # leaves time for the timing and the summary
echo "timmx GPU check: $(date -u +%Y-%m-%dT%H:%M:%SZ), output $OUT_DIR, budget ${BUDGET_S} s"

if ! command -v nvidia-smi >/dev/null 2>&1 && [[ ! -e /proc/driver/nvidia/version ]] &&
    [[ ! -e /dev/nvidiactl ]]; then
    echo "gpu_check: NO NVIDIA GPU on this machine (no nvidia-smi, no /proc/driver/nvidia," \
        "no /dev/nvidiactl). This check needs an NVIDIA GPU and driver; nothing was run."
    exit 2
fi

export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 # nothing is downloaded: live weights, photos from installed packages

echo "== preflight"
nvidia-smi || echo "nvidia-smi: not available or failed"
preflight_rc=0
"$PYTHON" "$HELPER" preflight "$OUT_DIR" || preflight_rc=$?
if ((preflight_rc == 2)); then
    echo "gpu_check: NO usable CUDA GPU for torch (see above); nothing else was run."
    exit 2
elif ((preflight_rc != 0)); then
    echo "gpu_check: the preflight failed (exit $preflight_rc)."
    exit 1
fi
HAVE_TRT=0 TRT_SKIP="" HAVE_TORCHAO=0 HAVE_ORT_CUDA=0 HAVE_CLI=0 CLI_ERROR="" HAVE_PHOTOS=0
# shellcheck source=/dev/null
source "$OUT_DIR/env.sh"

# Records a step's outcome and its place in the run: record NAME STATUS.
record() {
    echo "$2" >"$STEPS/$1.status"
    echo "$1" >>"$STEPS/order"
}

# Records a step that does not run: skip NAME REASON.
skip() {
    record "$1" "$2"
    echo "-- $1: $2"
}

# Runs one export with the time left: run_step NAME COMMAND...; its --json line goes to
# steps/NAME.json, its stderr to the log and steps/NAME.err, its outcome to steps/NAME.status
# (ok, failed: exit N, timed out after N s, not run: time budget).
run_step() {
    local name="$1" left limit rc=0 status t0="$SECONDS"
    shift
    left=$((EXPORT_DEADLINE - $(date +%s)))
    if ((left < 20)); then
        skip "$name" "not run: time budget"
        return 0
    fi
    limit=$((left < STEP_TIMEOUT_S ? left : STEP_TIMEOUT_S))
    echo "== $name (limit ${limit} s): $*"
    timeout --kill-after=15 "$limit" "$@" >"$STEPS/$name.json" \
        2> >(tee "$STEPS/$name.err" >&2) || rc=$?
    if ((rc == 0)); then
        status="ok"
    elif ((rc == 124 || rc == 137)) && ((limit < STEP_TIMEOUT_S)); then
        status="not run: time budget (stopped after ${limit} s)"
    elif ((rc == 124 || rc == 137)); then
        status="timed out after ${limit} s"
    else
        status="failed: exit $rc"
    fi
    record "$name" "$status"
    cat "$STEPS/$name.json"
    echo "-- $name: $status ($((SECONDS - t0)) s)"
}

echo "== inputs"
if ((HAVE_PHOTOS)); then
    prepare_rc=0
    # shellcheck disable=SC2086 # MODELS is a space-separated list
    "$PYTHON" "$HELPER" prepare "$OUT_DIR" $MODELS || prepare_rc=$?
    if ((prepare_rc != 0)); then record "prepare" "failed: exit $prepare_rc"; fi
fi
IFS=, read -r -a batch_list <<<"$BATCHES"
batch_min="$(printf '%s\n' "${batch_list[@]}" | sort -n | head -n1)"
batch_max="$(printf '%s\n' "${batch_list[@]}" | sort -n | tail -n1)"
trt_batch=() onnx_batch=()
if ((batch_max > 1)); then
    trt_batch=(--dynamic-batch --batch-size "$batch_max" --batch-min "$batch_min"
        --batch-max "$batch_max")
    onnx_batch=(--dynamic-batch --batch-size "$batch_max")
fi
timmx=("$PYTHON" -m timmx export)

echo "== TensorRT engines (built and verified by timmx export tensorrt --device cuda)"
for model in $MODELS; do
    weights=() verify=() calibrate=(--random-calibration)
    if [[ -f "$OUT_DIR/weights/$model.pth" ]]; then
        weights=(--checkpoint "$OUT_DIR/weights/$model.pth")
    fi
    if [[ -d "$OUT_DIR/photos" ]]; then
        verify=(--verify-data "$OUT_DIR/photos")
        calibrate=(--calibration-data "$OUT_DIR/photos") # verification: its held-out photos
    fi
    for mode in fp32 fp16 int8; do
        name="tensorrt-$model-$mode"
        if ((!HAVE_CLI)); then
            skip "$name" "failed: timmx CLI not importable: $CLI_ERROR"
        elif ((!HAVE_TRT)); then
            skip "$name" "$TRT_SKIP"
        elif [[ $mode == int8 ]] && ((!HAVE_TORCHAO)); then
            skip "$name" "not run: torchao not installed (pip install torchao)"
        else
            data=("${verify[@]}")
            if [[ $mode == int8 ]]; then data=("${calibrate[@]}"); fi
            run_step "$name" "${timmx[@]}" tensorrt "$model" --device cuda --mode "$mode" \
                "${weights[@]}" "${data[@]}" "${trt_batch[@]}" \
                -o "$ARTIFACTS/$model-$mode.engine" --overwrite --json
        fi
    done
done

echo "== ONNX files for onnxruntime's CUDA provider (timmx export onnx)"
for model in $MODELS; do
    weights=() verify=()
    if [[ -f "$OUT_DIR/weights/$model.pth" ]]; then
        weights=(--checkpoint "$OUT_DIR/weights/$model.pth")
    fi
    if [[ -d "$OUT_DIR/photos" ]]; then verify=(--verify-data "$OUT_DIR/photos"); fi
    name="onnx-$model"
    if ((!HAVE_ORT_CUDA)); then
        skip "$name" "not run: no onnxruntime CUDAExecutionProvider (pip install onnxruntime-gpu)"
    elif ((!HAVE_CLI)); then
        skip "$name" "failed: timmx CLI not importable: $CLI_ERROR"
    else
        run_step "$name" "${timmx[@]}" onnx "$model" "${weights[@]}" "${verify[@]}" \
            "${onnx_batch[@]}" -o "$ARTIFACTS/$model.onnx" --overwrite --json
    fi
done

echo "== GPU latency (benchmarks/gpu_check.py time)"
left=$((DEADLINE - 15 - $(date +%s)))
if ((left < 20)); then
    skip "time" "not run: time budget"
else
    time_rc=0
    # shellcheck disable=SC2086 # MODELS is a space-separated list
    timeout --kill-after=10 "$left" "$PYTHON" "$HELPER" time "$OUT_DIR" $MODELS \
        --batches "$BATCHES" --runs "$RUNS" --warmup "$WARMUP" --deadline "$((DEADLINE - 30))" ||
        time_rc=$?
    if ((time_rc == 0)); then
        record "time" "ok"
    else
        record "time" "failed: exit $time_rc"
    fi
fi

echo "== summary ($(($(date +%s) - START)) s)"
summary_rc=0
"$PYTHON" "$HELPER" summary "$OUT_DIR" || summary_rc=$?
echo "gpu_check: wrote $OUT_DIR/summary.md, summary.json, gpu_check.log (exit $summary_rc)"
exit "$summary_rc"
