"""Plain C (a directory): generated model source + weights + the timmx kernel library,
compiled with the system C compiler and checked against PyTorch."""

import contextlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from timmx.core.backend import DependencyStatus, ExportBackend
from timmx.core.options import option
from timmx.core.types import Device
from timmx.core.verify import VerifyReport, verify_with_runner
from timmx.errors import ConfigurationError

C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "main",
}  # fmt: skip
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class COptions:
    """``timmx export c`` flags."""

    prefix: str | None = option(
        None,
        "C identifier prefix of the API and file names (default: from the model name).",
        show_default=False,
    )
    embed_weights: bool = option(
        False,
        "Weights as a C array (<prefix>_weights.c) instead of a binary file.",
        "--embed-weights",
    )
    nhwc_input: bool = option(False, "The C API takes NHWC input (channel-last).", "--nhwc-input")
    fuse: bool = option(
        True, "Fuse BatchNorm, activations, residual adds and SE gates into kernels."
    )


def validate_prefix(prefix: str) -> None:
    """Reject prefixes that are not usable as a C identifier prefix."""
    if not IDENT.match(prefix) or prefix in C_KEYWORDS or len(prefix) > 48:
        raise ConfigurationError(
            f"--prefix {prefix!r} is not a valid C identifier prefix: use letters, digits and "
            "underscores, not starting with a digit, at most 48 characters "
            "(e.g. --prefix resnet50)."
        )
    if prefix.lower().startswith(("txk_", "txg_", "txm_")):
        raise ConfigurationError(
            f"--prefix {prefix!r} collides with the kernel library's names (txk_/txg_/txm_); "
            "choose another prefix."
        )


class CBackend(ExportBackend):
    """Dependency-free C: model.c/model.h, weights and kernels, verified by compiling them."""

    name = "c"
    help = (
        "Export to plain C (a directory: <prefix>.c/.h, weights, kernels, Makefile, demo); "
        "verified by compiling it with the system C compiler."
    )
    Options = COptions
    output_is_dir = True
    devices = (Device.cpu,)

    def check_dependencies(self) -> DependencyStatus:
        """Needs nothing beyond timmx's core; a C compiler only to verify (checked later)."""
        from timmx.c.build import find_compiler

        cc = find_compiler()
        return DependencyStatus(
            available=True,
            versions={},
            detail=None if cc else "no C compiler found (needed for verification)",
        )

    def prefix(self, job) -> str:
        """The C prefix: --prefix or derived from the model name."""
        from timmx.c.emit.generate import c_identifier

        return job.options.prefix or c_identifier(job.model_name)

    def validate(self, job) -> None:
        """Prefix and (when verifying) a C compiler."""
        validate_prefix(self.prefix(job))
        if job.common.verify:
            from timmx.c.build import require_compiler

            require_compiler()

    def convert(self, job, artifact: Path) -> None:
        """Lower, generate and write the C sources, weights and build files."""
        from timmx.c.export import export_c

        generated = export_c(
            job.model,
            artifact,
            prefix=self.prefix(job),
            embed_weights=job.options.embed_weights,
            nhwc_input=job.options.nhwc_input,
            fuse=job.options.fuse,
        )
        job.details["prefix"] = generated.prefix
        job.details["steps"] = generated.steps
        job.details["arena_bytes"] = generated.arena_bytes
        job.details["weights_bytes"] = generated.weights_bytes
        job.details["fused"] = dict(getattr(generated, "fused", {}))
        job.notes.append(
            f"{generated.steps} kernel calls; arena {generated.arena_bytes / 1e6:.2f} MB "
            f"(unshared {generated.plan.naive_bytes / 1e6:.2f} MB, {generated.plan.inplace} "
            f"in place); weights {generated.weights_bytes / 1e6:.2f} MB"
        )
        job.notes.append(f"build: cd {job.output} && make && ./{generated.prefix}_demo ...")

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """The generated model built with the system C compiler into a shared object and run in
        this process on ``threads`` threads (init starts them once; None: one per online core),
        as an application embeds it: what ``timmx benchmark`` times and --eval-data runs."""
        from timmx.c.build import require_compiler
        from timmx.c.inprocess import inprocess_runner

        if threads is not None and threads < 0:
            raise ConfigurationError(f"threads must be >= 0 (0: all cores), not {threads}")
        cc = require_compiler()
        with tempfile.TemporaryDirectory(prefix="timmx-c-build-") as tmp:
            prefix, nhwc = self.prefix(job), job.options.nhwc_input
            with inprocess_runner(
                artifact, prefix, Path(tmp), cc=cc, nhwc_input=nhwc, threads=threads
            ) as run:
                yield run

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Compile the generated demo program with the system C compiler, run it on the sample
        input (a process per batch, as a user runs it), compare with PyTorch."""
        from timmx.c.build import compiler_id, require_compiler
        from timmx.c.export import c_runner

        cc = require_compiler()
        runtime = "C (" + compiler_id(cc).split(" (")[0] + ")"
        with tempfile.TemporaryDirectory(prefix="timmx-c-build-") as tmp:
            prefix, nhwc = self.prefix(job), job.options.nhwc_input
            run = c_runner(artifact, prefix, Path(tmp), nhwc_input=nhwc, cc=cc)
            return verify_with_runner(
                job, run, runtime, note="compiled with -O2; kernels picked for this CPU at init"
            )
