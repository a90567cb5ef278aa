"""What runs inside a worker process: ``python -m timmx.core.bench.worker REQUEST RESULT``.

Three kinds of request (JSON):

- ``live``: write a live-weights checkpoint of a model (:func:`live_checkpoint`) and the
  photo folder it is verified on (:func:`live_options`);
- ``export``: one (model, format) pair of ``timmx matrix``: export with full verification,
  record status, figures, size, seconds or the converter's reason;
- ``benchmark``: one row of ``timmx benchmark``: export (or reuse) the artifact, then time it
  in its runtime at each thread count (:mod:`timmx.core.bench.measure`).

The heavy PyTorch work (live weights, exports, model preparation) runs in forked children
(:func:`timmx.core.isolation.run_isolated`) while this process is still single-threaded, so the
process that times a runtime holds that runtime alone, and its peak memory is that runtime's.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from timmx.core.backend import ExportBackend
from timmx.core.bench.child import report_progress
from timmx.core.bench.measure import (
    FIXED_ONE,
    NOT_SETTABLE,
    THREAD_CONTROL,
    Memory,
    Timing,
    peak_rss,
    reset_peak_rss,
    set_threads,
    time_runner,
)
from timmx.core.isolation import run_isolated
from timmx.errors import AccuracyError, TimmxError, VerificationError

LIVE_VERSION = 1  # bump when timmx.testing.live changes what it draws
RANDOM_REUSE = (
    "a reused artifact cannot be verified against timm's random init, which differs in every "
    "process; give --checkpoint, --pretrained or --live-weights"
)


def _progress(message: str, done: int | None = None, total: int | None = None) -> None:
    suffix = f" {done}/{total}" if total else ""
    report_progress(message + suffix)


# ---------------------------------------------------------------------------------- weights


def live_checkpoint(model: str, options: dict, folder: Path) -> Path:
    """A state_dict of ``model`` with :func:`timmx.testing.live_weights` (seed 0), cached in
    ``folder`` by model, creation options, timm version and live-weights version."""
    from timmx.core.backend import installed_version

    create = {k: options.get(k) for k in ("num_classes", "in_chans", "input_size")}
    key = json.dumps([model, create, installed_version("timm"), LIVE_VERSION], default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = folder / f"{model.replace('/', '_').replace(':', '_')}-{digest}.pth"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    _progress(f"Drawing live weights for {model}")
    run_isolated(
        lambda report: _write_live(model, create, path), _progress, "The live-weights process"
    )
    return path


def _write_live(model: str, create: dict, path: Path) -> None:
    import torch

    from timmx.core.job import CommonOptions
    from timmx.core.model import create_timm_model
    from timmx.core.options import parse_options
    from timmx.errors import ConfigurationError

    try:
        from timmx.testing import live_weights
    except ImportError as exc:
        raise ConfigurationError(
            "--live-weights needs scikit-image and scikit-learn (timmx's dev dependencies): "
            f"pip install scikit-image scikit-learn ({exc})"
        ) from exc
    common = parse_options(CommonOptions, {k: v for k, v in create.items() if v is not None})
    torch.manual_seed(0)
    net = create_timm_model(model, common)
    live_weights(net)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    torch.save(net.state_dict(), partial)
    os.replace(partial, path)


def photo_folder(folder: Path) -> Path:
    """``folder/photos``: the real photographs of :func:`timmx.testing.write_photo_folder`,
    written once (into a temporary sibling, then renamed, so parallel workers never see half of
    it) and reused."""
    photos = folder / "photos"
    if photos.is_dir():
        return photos
    from timmx.testing import write_photo_folder

    folder.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".photos-", dir=folder))
    write_photo_folder(partial)
    try:
        partial.rename(photos)
    except OSError:  # another worker got there first
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return photos


def live_options(options: dict, folder: Path) -> dict:
    """With live weights, verify on real photos (through the model's eval transform) unless
    the options already name the verification or calibration images: on noise, weights whose
    norms were calibrated on photos drift far out of range (efficientnetv2_rw_t: logits of
    1,800 on noise, 19 on photos) and the comparison judges that instead of the converter."""
    taken = {"verify_data", "calibration_data", "random_calibration"}
    if taken & {k for k, v in options.items() if v not in (None, False)}:
        return options
    return {**options, "verify_data": str(photo_folder(folder))}


def _with_weights(request: dict) -> dict:
    options = dict(request.get("options") or {})
    if request.get("live_weights"):
        folder = Path(request.get("weights_dir") or tempfile.gettempdir())
        options["checkpoint"] = str(live_checkpoint(request["model"], options, folder))
        options = live_options(options, folder)
    return options


# ----------------------------------------------------------------------------- matrix pairs


def export_pair(request: dict) -> dict:
    """One (model, format) pair: export with full verification; what happened, as a record."""
    from timmx.core.pipeline import make_job, run_export
    from timmx.core.registry import default_registry

    model, fmt = request["model"], request["format"]
    record: dict[str, object] = {"model": model, "format": fmt}
    started = time.perf_counter()
    keep = request.get("keep_dir")
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="timmx-matrix-"))
    try:
        options = _with_weights(request)
        backend = default_registry().get(fmt)
        job = make_job(backend, model, options)
        record["precision"] = backend.precision(job)
        folder.mkdir(parents=True, exist_ok=True)
        output = folder / backend.default_output(job).name
        result = run_export(backend, model, {**options, "output": output}, progress=_progress)
        record.update(_status(result.verify, result.evaluation))
        record["size_bytes"] = backend.artifact_size(result.output)
        record["notes"] = list(result.notes)
        record["details"] = {k: v for k, v in result.details.items() if _jsonable(v)}
    except (VerificationError, AccuracyError) as exc:
        record.update(_failed(exc))
    except TimmxError as exc:
        record.update(status="export_failed", reason=str(exc))
    except Exception as exc:  # a bug or an unexpected converter error: still one record
        record.update(status="export_failed", reason=f"{type(exc).__name__}: {exc}")
    finally:
        if not keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def _status(report, evaluation) -> dict:
    data: dict[str, object] = {"verify": report.to_dict() if report else None}
    if evaluation is not None:
        data["eval"] = evaluation.to_dict()
    if report is None:
        data["status"] = "unverified"
    elif not report.checked:
        data["status"] = "unchecked"
    else:
        data["status"] = "passed" if report.passed else "verify_failed"
    return data


def _failed(exc: VerificationError | AccuracyError) -> dict:
    report = getattr(exc, "report", None)
    if isinstance(exc, AccuracyError):
        return {"status": "accuracy_failed", "reason": str(exc), "eval": _dict(report)}
    return {"status": "verify_failed", "reason": str(exc), "verify": _dict(report)}


def _dict(report) -> dict | None:
    return report.to_dict() if hasattr(report, "to_dict") else None


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# ------------------------------------------------------------------------------ benchmark


def benchmark_row(request: dict) -> dict:
    """One row of ``timmx benchmark``: the artifact (exported or reused), its figures, then its
    latency at every thread count, first-inference and load time, and peak memory."""
    fmt = request["format"]
    row: dict[str, object] = {"format": fmt, "thread_control": THREAD_CONTROL.get(fmt)}
    try:
        options = _with_weights(request)
        if fmt == "torch":
            _torch_row(request, options, row)
        else:
            _format_row(request, options, row)
    except TimmxError as exc:
        row.setdefault("status", "export_failed")
        row["reason"] = str(exc)
    return row


def _format_row(request: dict, options: dict, row: dict) -> None:
    from timmx.core.pipeline import make_job, run_export
    from timmx.core.registry import default_registry

    model = request["model"]
    backend = default_registry().get(request["format"])
    artifact = Path(request["artifact"])
    job = make_job(backend, model, {**options, "output": artifact})
    row["precision"] = backend.precision(job)
    reused = bool(request.get("reuse")) and artifact.exists()
    row["reused"] = reused
    if reused:
        _progress("Checking the existing artifact")
        verify, evaluation, info = run_isolated(
            lambda report: _check_existing(backend, model, options, artifact, report),
            _progress,
            f"The {backend.name} verification process",
        )
        row.update(_status(verify, evaluation))
    else:
        started = time.perf_counter()
        try:
            result = run_export(backend, model, {**options, "output": artifact}, progress=_progress)
            row.update(_status(result.verify, result.evaluation))
            row["notes"] = list(result.notes)
        except (VerificationError, AccuracyError) as exc:
            row.update(_failed(exc))
            _progress("Exporting again without verification, to time it anyway")
            unchecked = {**options, "output": artifact, "verify": False, "eval_data": None}
            unchecked.pop("max_accuracy_drop", None)
            unchecked.pop("eval_samples", None)
            run_export(backend, model, unchecked, progress=_progress)
        except TimmxError as exc:
            row.update(status="export_failed", reason=str(exc))
            return
        row["export_seconds"] = round(time.perf_counter() - started, 2)
        info = run_isolated(
            lambda report: _model_info(model, options), _progress, "The model preparation"
        )
    row["artifact"] = str(artifact)
    row["size_bytes"] = backend.artifact_size(artifact)
    verify = row.get("verify") or {}
    if verify.get("default_precision"):
        row["default_precision"] = verify["default_precision"]
    _measure(backend, job, artifact, info, request, options, row)


def _model_info(model: str, options: dict) -> dict:
    """What the measurement needs to know of the prepared model (everything but the module)."""
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model
    from timmx.core.options import parse_options

    common = parse_options(CommonOptions, {**options, "checkpoint": None, "pretrained": False})
    return _info(prepare_model(model, common))


def _info(prepared) -> dict:
    import dataclasses

    return {f.name: getattr(prepared, f.name) for f in dataclasses.fields(prepared)
            if f.name != "module"}  # fmt: skip


def _check_existing(backend: ExportBackend, model: str, options: dict, artifact: Path, report):
    """Verify (and evaluate) an artifact that is already there, as an export would."""
    from timmx.core.evaluate import evaluate, not_run
    from timmx.core.model import prepare_model
    from timmx.core.pipeline import choose_verify_files, load_verify_images, make_job

    job = make_job(backend, model, {**options, "output": artifact})
    job.prepared = prepare_model(model, job.common)
    verification = None
    random_init = not (job.common.checkpoint or job.common.pretrained)
    if job.common.verify and random_init:
        from timmx.core.verify import unchecked

        verification = unchecked("-", RANDOM_REUSE, backend.precision(job))
    elif job.common.verify:
        report("Verifying the existing artifact")
        choose_verify_files(job)
        load_verify_images(job)
        verification = backend.verify(job, artifact)
    evaluation = None
    if job.common.eval_data is not None:
        with backend.runtime(job, artifact) as runner:
            if runner is None:
                evaluation = not_run(job, f"the {backend.name} runtime cannot run here")
            else:
                evaluation = evaluate(job, runner, report)
    return verification, evaluation, _info(job.prepared)


def _torch_row(request: dict, options: dict, row: dict) -> None:
    """PyTorch eager: the baseline row (timed in this process, with torch's threads)."""
    import contextlib

    from timmx.backends._torch_capture import torch_runner
    from timmx.core.job import CommonOptions, ExportJob
    from timmx.core.model import prepare_model
    from timmx.core.options import parse_options

    _progress("Preparing the PyTorch model")
    common = parse_options(CommonOptions, options)
    prepared = prepare_model(request["model"], common)
    run = torch_runner(prepared.module, prepared.device)
    row.update(status="baseline", precision="fp32", verify=None)
    if common.eval_data is not None:
        from timmx.core.evaluate import evaluate

        job = ExportJob(backend=None, model_name=request["model"], common=common, options=None)
        job.prepared = prepared
        row["eval"] = evaluate(job, run, _progress).to_dict()
    info = _info(prepared)

    @contextlib.contextmanager
    def runtime(job, artifact, threads=None):
        yield run

    _measure(None, None, None, info, request, options, row, runtime=runtime)


def timing_input(info: dict, options: dict):
    """The timed batch: the first images of --verify-data (else --eval-data) through the
    model's eval transform, so that the timing sees activations in the range of real inputs;
    without either, a seeded float32 batch in the range the artifact expects (like
    sample_input). Returns (batch, what it is). Noise drives a model with real (or live)
    weights far out of its range, and some kernels run slower there (efficientnet_b0 on live
    weights: logits 6,616 on noise, 14 on a photo, and the C twice as slow)."""
    import numpy as np

    shape = (int(info["batch_size"]), *(int(v) for v in info["input_size"]))
    folder = options.get("verify_data") or options.get("eval_data")
    if folder:
        from timmx.core.images import image_files, load_images
        from timmx.core.model import PreparedModel

        flag = "--verify-data" if options.get("verify_data") else "--eval-data"
        files = image_files(Path(folder), flag)[: shape[0]]
        files = [files[i % len(files)] for i in range(shape[0])]
        images, _ = load_images(PreparedModel(module=None, **info), files, strict=True, flag=flag)
        names = ", ".join(f.name for f in files[:3]) + (", ..." if len(files) > 3 else "")
        what = f"{len(files)} image(s) of {flag} {folder} ({names})"
        return np.ascontiguousarray(images.numpy(), dtype=np.float32), what
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    if not info["normalize"]:
        mean = np.asarray(info["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(info["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        x = (x - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32), "seeded random input"


def _measure(backend, job, artifact, info, request, options, row, runtime=None) -> None:
    """Time the runtime at each requested thread count; fills the row's timings and memory."""
    fmt = request["format"]
    if job is not None:
        from timmx.core.model import PreparedModel

        job.prepared = PreparedModel(module=None, **info)
    open_runtime = runtime or backend.runtime
    memory = Memory(base_rss_bytes=reset_peak_rss())
    x, row["timing_input"] = timing_input(info, options)
    timings: list[Timing] = []
    measured_once = False
    for threads in request["threads"]:
        timing = Timing(threads=threads, applied="")
        timings.append(timing)
        if measured_once and fmt in FIXED_ONE | NOT_SETTABLE:
            first = timings[0]
            timing.applied = "1 (fixed)" if fmt in FIXED_ONE else first.applied
            timing.note = f"same runtime as at {first.threads} thread(s); not re-measured"
            continue
        passed, timing.applied = set_threads(fmt, threads)

        def progress(message: str, t=threads) -> None:
            _progress(f"Timing at {t} thread(s): {message}")

        try:
            ran = time_runner(
                lambda p=passed: open_runtime(job, artifact, threads=p),
                x,
                runs=int(request["runs"]),
                warmup=int(request["warmup"]),
                timing=timing,
                progress=progress,
            )
        except Exception as exc:
            timing.note = f"failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
            row["measure_error"] = timing.note
            continue
        measured_once = True
        if not ran:
            row["no_runtime"] = True
            timing.note = "the runtime cannot run on this machine"
            break
    memory.peak_rss_bytes = peak_rss()
    row["timings"] = [t.to_dict() for t in timings]
    row["base_rss_bytes"] = memory.base_rss_bytes
    row["peak_rss_bytes"] = memory.peak_rss_bytes


# ---------------------------------------------------------------------------------- main

HANDLERS = {
    "live": lambda r: {
        "checkpoint": str(live_checkpoint(r["model"], r.get("options") or {}, Path(r["folder"]))),
        "options": live_options(r.get("options") or {}, Path(r["folder"])),
    },
    "export": export_pair,
    "benchmark": benchmark_row,
}


def main(argv: list[str]) -> int:
    """Run the request in ``argv[1]``; write the result to ``argv[2]`` (atomically)."""
    from timmx.core.isolation import _die_with_parent

    parent = os.getppid()
    _die_with_parent()  # a killed timmx (even SIGKILL) takes its workers with it
    if os.getppid() != parent:
        return 1
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    try:
        result = HANDLERS[request["kind"]](request)
    except TimmxError as exc:
        result = {"error": str(exc), "error_type": type(exc).__name__}
    except Exception as exc:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result = {"error": text, "error_type": type(exc).__name__}
        traceback.print_exc()
    target = Path(argv[2])
    partial = target.with_name(target.name + ".part")
    partial.write_text(json.dumps(result, default=str), encoding="utf-8")
    os.replace(partial, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
