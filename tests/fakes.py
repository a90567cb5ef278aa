"""Fake backends for exercising the pipeline's failure paths (registered by fixtures only)."""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from timmx.core.backend import ExportBackend
from timmx.core.options import option
from timmx.core.verify import verify_with_runner


@dataclass
class FakeOptions:
    level: int = option(1, "A number.", min=1)
    shout: bool = option(False, "A flag.", "--shout")


class FakeBackend(ExportBackend):
    """Writes a small file; ``behaviour`` picks how convert/verify misbehave."""

    name = "fake"
    help = "A fake format used by the tests."
    suffix = ".fake"
    Options = FakeOptions

    def __init__(self, behaviour: str = "ok", requires: tuple[str, ...] = ()) -> None:
        self.behaviour = behaviour
        self.requires = requires
        self.extra = "fake" if requires else None

    def convert(self, job, artifact: Path) -> None:
        artifact.write_bytes(b"partial")
        if self.behaviour == "interrupt":
            raise KeyboardInterrupt
        if self.behaviour == "crash":
            raise RuntimeError("converter exploded")

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """PyTorch itself: exact ("ok"), shifted by 1 ("wrong") or with the classes rolled by
        one, so every prediction is another class ("shuffle")."""
        import torch

        def run(x):
            reference = job.model.run(torch.from_numpy(x)).numpy()
            if self.behaviour == "shuffle":
                return reference[:, [*range(1, reference.shape[1]), 0]]
            return reference + (1.0 if self.behaviour == "wrong" else 0.0)

        yield run

    def verify(self, job, artifact: Path):
        with self.runtime(job, artifact) as run:
            return verify_with_runner(job, run, "fake-runtime")
