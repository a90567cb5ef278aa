"""The export pipeline every backend runs through."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from timmx.console import status
from timmx.errors import ConfigurationError, ExportError, TimmxError, VerificationError
from timmx.export.base import ExportBackend
from timmx.export.common import (
    check_model_name,
    path_size,
    prepare_model,
    validate_common_args,
)
from timmx.export.job import ExportJob
from timmx.export.result import ExportResult
from timmx.export.staging import Staging, ensure_writable


def require_dependencies(backend: ExportBackend) -> None:
    """Raise a DependencyError with the install command when the backend cannot run here."""
    from timmx.errors import DependencyError

    state = backend.check_dependencies()
    if not state.available:
        missing = state.missing or [backend.name]
        hint = state.install_hint or f"pip install {' '.join(missing)}"
        if state.detail and not state.missing:
            raise ConfigurationError(f"The {backend.name} backend cannot run: {state.detail}")
        raise DependencyError(backend.name, missing, hint)


def resolve_output(job: ExportJob) -> Path:
    """The output path: --output, or the backend's default in the current folder."""
    output = job.common.output or job.backend.default_output(job)
    is_dir = job.backend.writes_directory(job)
    if output.exists() and output.is_dir() and not is_dir:
        raise ConfigurationError(
            f"--output {output} is a directory; the {job.backend.name} format writes a file "
            f"(e.g. {output / job.backend.default_output(job).name})."
        )
    if output.exists() and not output.is_dir() and is_dir:
        raise ConfigurationError(
            f"--output {output} is a file; the {job.backend.name} format writes a directory."
        )
    return output


def run_export(
    backend: ExportBackend, values: dict[str, object], *, quiet: bool = True
) -> ExportResult:
    """Validate, prepare, convert, verify and move the artifact into place.

    ``values`` holds the command's keyword arguments (shared and backend options). Every
    problem raises a TimmxError; nothing is left at the output path unless all steps passed.
    """
    started = time.perf_counter()
    job = ExportJob.from_options(backend, values)
    validate_common_args(job.common, mean_std_for_calibration=backend.mean_std_for_calibration)
    backend.validate(job)
    require_dependencies(backend)
    with status("Checking model name", quiet=quiet):
        check_model_name(job.model_name)
    job.output = resolve_output(job)
    ensure_writable(job.output)
    with Staging(job.output, is_dir=backend.writes_directory(job)) as stage:
        with status(f"Preparing {job.model_name}", quiet=quiet):
            job.prepared = prepare_model(job.model_name, job.common)
        with status(f"Exporting to {backend.name}", quiet=quiet):
            _guarded(backend.name, "export", lambda: backend.convert(job, stage.path))
        report = None
        if job.common.verify:
            with status(f"Verifying in {backend.name}'s runtime", quiet=quiet):
                report = _guarded(
                    backend.name,
                    "verification",
                    lambda: backend.verify(job, stage.path),
                )
            if report.checked and not report.passed:
                raise VerificationError(
                    f"Verification failed, nothing was written to {job.output}. "
                    f"{report.failure()} Loosen --atol/--rtol or pass --no-verify to keep it.",
                    report,
                )
        stage.commit()
    return ExportResult(
        format=backend.name,
        model=job.model_name,
        output=job.output,
        size_bytes=path_size(job.output),
        seconds=time.perf_counter() - started,
        verify=report,
        notes=job.notes,
        details=job.details,
    )


def _guarded(backend_name: str, step: str, action):
    """Run ``action``; turn unexpected exceptions into an ExportError naming the step.

    Converter warnings (tracer notes, deprecations) are silenced unless TIMMX_DEBUG is set.
    """
    try:
        with warnings.catch_warnings():
            if not os.environ.get("TIMMX_DEBUG"):
                warnings.simplefilter("ignore")
            return action()
    except (TimmxError, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = str(exc).strip() or type(exc).__name__
        lines = message.splitlines()
        if len(lines) > 12:
            message = "\n".join([*lines[:12], "..."])
        raise ExportError(f"{backend_name} {step} failed: {type(exc).__name__}: {message}") from exc
