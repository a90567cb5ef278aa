"""The export pipeline every backend runs through.

1. Cheap checks in this process, without torch: options, backend rules, dependencies, the
   model name (from the model index), the output path and what is already there.
2. The heavy part, in a child process where that is safe (:mod:`timmx.core.isolation`):
   prepare the model, convert into a staging folder, write the directory marker, verify.
3. Back here: a failed verification raises; otherwise the staged artifact moves into place.

A failure or an interruption (Ctrl-C, SIGTERM, a killed child) at any point leaves nothing at
the output path and never touches an existing artifact.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timmx.core.backend import MARKER_FILE, ExportBackend
from timmx.core.isolation import run_isolated, sigterm_as_interrupt
from timmx.core.job import CommonOptions, ExportJob, require_device, validate_common
from timmx.core.options import parse_options, reject_unknown, specs
from timmx.core.quiet import quiet
from timmx.core.result import ExportResult
from timmx.core.staging import Staging, missing_parents
from timmx.errors import (
    AccuracyError,
    ConfigurationError,
    DependencyError,
    ExportError,
    TimmxError,
    VerificationError,
)

# Told what a long step is doing, and for counted steps how far it got (done, total); the CLI
# shows a spinner or a progress bar. The default shows nothing.
Progress = Callable[..., None]
MEMORY_ERRORS = ("not enough memory", "can't allocate memory", "cannot allocate memory")


def _silent(message: str, done: int | None = None, total: int | None = None) -> None:
    """The default progress reporter: says nothing."""


def require_dependencies(backend: ExportBackend) -> None:
    """Raise a DependencyError with the install command when the backend cannot run here."""
    state = backend.check_dependencies()
    if not state.available:
        missing = state.missing or [backend.name]
        hint = state.install_hint or f"pip install {' '.join(missing)}"
        if state.detail and not state.missing:
            raise ConfigurationError(f"The {backend.name} backend cannot run: {state.detail}")
        raise DependencyError(backend.name, missing, hint)


def make_job(backend: ExportBackend, model: str, supplied: dict[str, Any]) -> ExportJob:
    """Check ``supplied`` (option name -> value) against the shared and the backend's options.

    Unknown names, wrong types, invalid choices and out-of-range or non-finite numbers raise a
    ConfigurationError naming the flag (and, for another format's option, that format).
    """
    from timmx.core.registry import default_registry

    known = [spec.name for spec in (*specs(CommonOptions), *specs(backend.Options))]
    unknown = [name for name in supplied if name not in known]
    owners = {name: default_registry().formats_with_option(name) for name in unknown}
    reject_unknown(supplied, known, owners, backend.name)
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(
            f"The model name must be a non-empty string, got {model!r}; see `timmx list`."
        )
    output = supplied.get("output")
    if isinstance(output, str | Path) and not str(output).strip():
        raise ConfigurationError(
            "--output is empty; give a path (e.g. -o model.onnx) or leave --output out."
        )
    return ExportJob(
        backend=backend,
        model_name=model,
        common=parse_options(CommonOptions, supplied),
        options=parse_options(backend.Options, supplied),
    )


def _protected(path: Path) -> str | None:
    """Why replacing the folder ``path`` would be unreasonable (None when it is not)."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd:
        return "is the current folder"
    if resolved in cwd.parents:
        return "holds the current folder"
    if resolved == Path.home().resolve():
        return "is your home folder"
    if resolved == Path(resolved.anchor):
        return "is the root of the file system"
    return None


def resolve_output(job: ExportJob) -> Path:
    """The output path (--output, or the backend's default here), checked before any work.

    An existing folder is replaced only when it is an export of the same format, empty, or
    ``--overwrite`` is given; never the current folder, one above it or the home folder.
    """
    backend = job.backend
    output = job.common.output or backend.default_output(job)
    is_dir = backend.writes_directory(job)
    example = backend.default_output(job).name
    if output.name in ("", ".", ".."):
        raise ConfigurationError(
            f"--output {output} names a folder that exists already; give the export a name of "
            f"its own, e.g. -o {output / example}."
        )
    if output.is_dir():
        if not is_dir:
            raise ConfigurationError(
                f"--output {output} is a directory; the {backend.name} format writes a file "
                f"(e.g. {output / example})."
            )
        reason = _protected(output)
        if reason:
            raise ConfigurationError(
                f"--output {output} {reason}; a {backend.name} export cannot replace it. "
                f"Give it a new name, e.g. -o {output / example}."
            )
        entries = sorted(p.name for p in output.iterdir())
        if entries and not backend.owns(output) and not job.common.overwrite:
            shown = ", ".join(entries[:5]) + (f" (+{len(entries) - 5} more)" if entries[5:] else "")
            raise ConfigurationError(
                f"--output {output} already exists and is not a timmx {backend.name} export "
                f"(it holds {shown}); nothing was changed. Choose another --output, or add "
                "--overwrite to replace that folder and everything in it."
            )
    elif output.exists() and is_dir:
        raise ConfigurationError(
            f"--output {output} is a file; the {backend.name} format writes a directory."
        )
    missing = missing_parents(output)
    existing = (missing[0] if missing else output.absolute()).parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"Output folder {existing} is not writable; choose another --output."
        )
    return output


def write_marker(directory: Path, job: ExportJob) -> None:
    """Write (or complete) the ``timmx.json`` marker of a directory artifact."""
    path = directory / MARKER_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    merged = {"format": job.backend.name, **job.model.metadata(), **data}
    merged["format"] = job.backend.name
    path.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")


def run_export(
    backend: ExportBackend,
    model: str,
    supplied: dict[str, Any],
    *,
    progress: Progress = _silent,
) -> ExportResult:
    """Validate, prepare, convert, verify and move the artifact into place.

    ``supplied`` holds the options by Python name (shared and the backend's own). Every problem
    raises a TimmxError; nothing is left at the output path unless all steps passed. SIGTERM
    raises :class:`timmx.core.isolation.Terminated` (a KeyboardInterrupt) like Ctrl-C.
    """
    from timmx.core.model import check_model_name

    started = time.perf_counter()
    job = make_job(backend, model, supplied)
    validate_common(job.common, backend)
    backend.validate(job)
    require_dependencies(backend)
    require_device(job.common.device)
    check_model_name(job.model_name)
    job.output = resolve_output(job)
    with sigterm_as_interrupt(), Staging(job.output, is_dir=backend.writes_directory(job)) as stage:
        report, notes, details, evaluation = run_isolated(
            lambda report_step: _produce(job, stage.path, report_step),
            progress,
            f"The {backend.name} export process",
        )
        job.notes[:] = notes
        job.details.update(details)
        if report is not None and report.checked and not report.passed:
            raise VerificationError(
                f"Verification failed, nothing was written to {job.output}. "
                f"{report.failure()} Loosen --atol/--rtol or pass --no-verify to keep it.",
                report,
            )
        if evaluation is not None and evaluation.passed is False:
            raise AccuracyError(
                f"Accuracy on --eval-data fell by {evaluation.drop:.2f} top-1 points (PyTorch "
                f"{evaluation.top1_torch:.2f}%, {backend.name} {evaluation.top1_artifact:.2f}% on "
                f"{evaluation.n} images), more than --max-accuracy-drop {evaluation.max_drop:g}; "
                f"nothing was written to {job.output}. Calibrate on more or better data, or "
                "choose a higher precision.",
                evaluation,
            )
        stage.commit()
    return ExportResult(
        format=backend.name,
        model=job.model_name,
        output=job.output,
        size_bytes=backend.artifact_size(job.output),
        seconds=time.perf_counter() - started,
        verify=report,
        notes=job.notes,
        details=job.details,
        evaluation=evaluation,
    )


def _produce(job: ExportJob, artifact: Path, progress: Progress) -> tuple:
    """The heavy part: prepare, convert, mark, verify, evaluate.

    Returns (verify report, notes, details, eval report).
    """
    from timmx.core.model import prepare_model

    backend, common = job.backend, job.common
    progress(f"Preparing {job.model_name}")
    job.prepared = _guarded(job, "model preparation", lambda: prepare_model(job.model_name, common))
    choose_verify_files(job)
    progress(f"Exporting to {backend.name}")
    _guarded(job, f"{backend.name} export", lambda: backend.convert(job, artifact))
    if backend.output_is_dir:
        write_marker(artifact, job)
    report = None
    if common.verify:
        load_verify_images(job)
        progress(f"Verifying in {backend.name}'s runtime")
        report = _guarded(
            job, f"{backend.name} verification", lambda: backend.verify(job, artifact)
        )
    if common.eval_data is not None:
        progress("Evaluating on --eval-data")
        job.evaluation = _guarded(
            job, f"{backend.name} evaluation", lambda: _evaluate(job, artifact, progress)
        )
    return report, job.notes, job.details, job.evaluation


def choose_verify_files(job: ExportJob) -> None:
    """Pick the --verify-data images the artifact is verified on (calibration may pick them
    later, during conversion, when --verify-data is not given)."""
    from timmx.core.images import image_files, subset
    from timmx.core.verify import VERIFY_IMAGES

    folder = job.common.verify_data
    if folder is not None:
        job.verify_files = subset(image_files(folder, "--verify-data"), VERIFY_IMAGES)
        job.verify_source = f"{len(job.verify_files)} images of --verify-data {folder}"


def load_verify_images(job: ExportJob) -> None:
    """Load the chosen verification images through the model's eval transform (none chosen:
    verification uses seeded random images)."""
    from timmx.core.images import load_images

    if job.verify_files:
        flag = "--verify-data" if job.common.verify_data is not None else "--calibration-data"
        job.verify_images, _ = load_images(job.model, job.verify_files, strict=True, flag=flag)


def _evaluate(job: ExportJob, artifact: Path, progress: Progress):
    from timmx.core.evaluate import evaluate, not_run

    with job.backend.runtime(job, artifact) as runner:
        if runner is None:
            return not_run(job, f"the {job.backend.name} runtime cannot run on this machine")
        return evaluate(job, runner, progress)


def _out_of_memory(job: ExportJob, step: str, exc: BaseException) -> ConfigurationError | None:
    text = str(exc).lower()
    if not isinstance(exc, MemoryError) and not any(m in text for m in MEMORY_ERRORS):
        return None
    common = job.common
    size = "x".join(str(v) for v in common.input_size) if common.input_size else "default"
    return ConfigurationError(
        f"The {step} ran out of memory (input size {size}, --batch-size {common.batch_size}); "
        "use a smaller --input-size or --batch-size, or a machine with more memory."
    )


def _guarded(job: ExportJob, step: str, action):
    """Run ``action``; turn unexpected exceptions into an ExportError naming the step.

    Running out of memory is a ConfigurationError naming the input size. Converter warnings
    (tracer notes, deprecations) are silenced unless TIMMX_DEBUG is set.
    """
    try:
        with quiet(streams=False, native=False):
            return action()
    except (TimmxError, KeyboardInterrupt):
        raise
    except Exception as exc:
        memory = _out_of_memory(job, step, exc)
        if memory is not None:
            raise memory from exc
        message = str(exc).strip() or type(exc).__name__
        lines = message.splitlines()
        if len(lines) > 12:
            message = "\n".join([*lines[:12], "..."])
        raise ExportError(f"{step} failed: {type(exc).__name__}: {message}") from exc
