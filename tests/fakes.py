"""Fake backends for exercising the pipeline's failure paths (registered by fixtures only)."""

from pathlib import Path
from typing import Annotated

import typer

from timmx.export.base import ExportBackend
from timmx.export.options import build_command
from timmx.export.verify import verify_with_runner


class FakeBackend(ExportBackend):
    """Writes a small file; ``behaviour`` picks how convert/verify misbehave."""

    name = "fake"
    help = "A fake format used by the tests."
    suffix = ".fake"

    def __init__(self, behaviour: str = "ok", requires: tuple[str, ...] = ()) -> None:
        self.behaviour = behaviour
        self.requires = requires
        self.extra = "fake" if requires else None

    def create_command(self):
        def options(
            level: Annotated[int, typer.Option(min=1, help="A number.")] = 1,
            shout: Annotated[bool, typer.Option("--shout", help="A flag.")] = False,
        ) -> None: ...

        return build_command(self, options)

    def convert(self, job, artifact: Path) -> None:
        artifact.write_bytes(b"partial")
        if self.behaviour == "interrupt":
            raise KeyboardInterrupt
        if self.behaviour == "crash":
            raise RuntimeError("converter exploded")

    def verify(self, job, artifact: Path):
        def wrong(x):
            reference = job.model.run(job.model.sample_input(x.shape[0])).numpy()
            return reference + (1.0 if self.behaviour == "wrong" else 0.0)

        return verify_with_runner(job, wrong, "fake-runtime")
