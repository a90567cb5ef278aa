"""The export pipeline every backend runs through."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from timmx.core.backend import ExportBackend
from timmx.core.job import CommonOptions, ExportJob, validate_common
from timmx.core.options import parse_options, reject_unknown, specs
from timmx.core.quiet import quiet
from timmx.core.result import ExportResult, path_size
from timmx.core.staging import Staging, ensure_writable
from timmx.errors import (
    ConfigurationError,
    DependencyError,
    ExportError,
    TimmxError,
    VerificationError,
)

# Shows what a long step is doing (the CLI passes a spinner); the default shows nothing.
Progress = Callable[[str], AbstractContextManager[None]]


def _silent(message: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


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

    Unknown names, wrong types, invalid choices and out-of-range numbers raise a
    ConfigurationError naming the flag (and, for another format's option, that format).
    """
    from timmx.core.registry import default_registry

    known = [spec.name for spec in (*specs(CommonOptions), *specs(backend.Options))]
    unknown = [name for name in supplied if name not in known]
    owners = {name: default_registry().formats_with_option(name) for name in unknown}
    reject_unknown(supplied, known, owners, backend.name)
    if not isinstance(model, str) or not model:
        raise ConfigurationError(f"The model name must be a non-empty string, got {model!r}.")
    return ExportJob(
        backend=backend,
        model_name=model,
        common=parse_options(CommonOptions, supplied),
        options=parse_options(backend.Options, supplied),
    )


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
    backend: ExportBackend,
    model: str,
    supplied: dict[str, Any],
    *,
    progress: Progress = _silent,
) -> ExportResult:
    """Validate, prepare, convert, verify and move the artifact into place.

    ``supplied`` holds the options by Python name (shared and the backend's own). Every problem
    raises a TimmxError; nothing is left at the output path unless all steps passed.
    """
    from timmx.core.model import check_model_name, prepare_model

    started = time.perf_counter()
    job = make_job(backend, model, supplied)
    validate_common(job.common, backend)
    backend.validate(job)
    require_dependencies(backend)
    with progress("Checking model name"):
        check_model_name(job.model_name)
    job.output = resolve_output(job)
    ensure_writable(job.output)
    with Staging(job.output, is_dir=backend.writes_directory(job)) as stage:
        with progress(f"Preparing {job.model_name}"):
            job.prepared = prepare_model(job.model_name, job.common)
        with progress(f"Exporting to {backend.name}"):
            _guarded(backend.name, "export", lambda: backend.convert(job, stage.path))
        report = None
        if job.common.verify:
            with progress(f"Verifying in {backend.name}'s runtime"):
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
        with quiet(streams=False, native=False):
            return action()
    except (TimmxError, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = str(exc).strip() or type(exc).__name__
        lines = message.splitlines()
        if len(lines) > 12:
            message = "\n".join([*lines[:12], "..."])
        raise ExportError(f"{backend_name} {step} failed: {type(exc).__name__}: {message}") from exc
