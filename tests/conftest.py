"""Shared fixtures: a CLI runner and helpers for checking export results."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import FakeBackend
from typer.testing import CliRunner

from timmx.cli.app import app
from timmx.core.registry import default_registry


@pytest.fixture
def cli() -> Callable[..., object]:
    """Invoke ``timmx`` with string arguments; returns click's Result (stdout/stderr apart)."""
    runner = CliRunner()

    def invoke(*args: object):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


LIVE_FLAGS = {"--num-classes": "num_classes", "--in-chans": "in_chans"}


@pytest.fixture
def export_json(cli, live_checkpoint, photos) -> Callable[..., dict]:
    """Run ``timmx export FORMAT MODEL ... --json``, assert exit 0 and return the parsed result.

    Evidence by default: unless the test names its own weights (--checkpoint, --pretrained) the
    model gets live weights (timmx.testing.live_weights, matching --num-classes, --in-chans and
    --input-size), and unless it gives --verify-data verification runs on real photographs.
    """

    def run(fmt: object, model: object, *args: object) -> dict:
        given = [str(a) for a in args]
        extra: list[object] = []
        if not {"--checkpoint", "--pretrained"} & set(given):
            options = {
                name: int(given[given.index(flag) + 1])
                for flag, name in LIVE_FLAGS.items()
                if flag in given
            }
            if "--input-size" in given:
                at = given.index("--input-size")
                options["input_size"] = tuple(int(v) for v in given[at + 1 : at + 4])
            extra += ["--checkpoint", live_checkpoint(str(model), **options)]
        if not {"--verify-data", "--calibration-data"} & set(given):
            extra += [
                "--verify-data",
                photos,
            ]  # (a calibration folder verifies on its held-out slice)
        result = cli("export", fmt, model, *args, *extra, "--json")
        assert result.exit_code == 0, f"export failed ({result.exit_code}): {result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def assert_passed(data: dict, *, max_abs: float | None = None) -> None:
    """Assert a result's verification ran, passed and (optionally) stayed under ``max_abs``."""
    verify = data["verify"]
    assert verify is not None, "verification did not run"
    assert verify["checked"], f"numerics were not checked: {verify['note']}"
    assert verify["passed"], f"verification failed: {verify}"
    if max_abs is not None:
        assert verify["max_abs_err"] <= max_abs, f"max abs err {verify['max_abs_err']} > {max_abs}"


def leftovers(folder: Path) -> list[str]:
    """Names of entries in ``folder`` (to check that failed exports left nothing behind)."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def fake_backend():
    """Register a fake backend for the duration of one test, then always unregister it."""
    registered = []

    def register(behaviour: str = "ok", requires: tuple[str, ...] = ()) -> FakeBackend:
        backend = FakeBackend(behaviour, requires)
        default_registry().register(backend)
        registered.append(backend)
        return backend

    yield register
    for backend in registered:
        default_registry().unregister(backend.name)


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A folder of real photographs (scikit-image and scikit-learn ship them)."""
    from timmx.testing import write_photo_folder

    return write_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """test_resnet trained on scikit-learn's digits: train/test ImageFolders and a checkpoint."""
    from timmx.testing.digits import train_digits

    trained = train_digits(tmp_path_factory.mktemp("digits"))
    assert trained.accuracy >= 95.0, f"the digits model reached only {trained.accuracy:.1f}%"
    return trained


@pytest.fixture(scope="session")
def live_checkpoint(tmp_path_factory):
    """``live_checkpoint(model, num_classes=, in_chans=, input_size=)``: a state_dict file of
    live weights for the model timmx builds with those flags."""
    from timmx.testing.checkpoint import save_live_checkpoint

    made: dict[tuple, Path] = {}

    def make(model: str, **options) -> Path:
        key = (model, tuple(sorted(options.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp("live")
            made[key] = save_live_checkpoint(model, folder, **options)
        return made[key]

    return make


def custom_prepared(module, input_size: tuple[int, ...], *, num_classes: int = 0,
                    num_features: int = 0):  # fmt: skip
    """A PreparedModel for a hand-built module (no timm model behind it): batch 1 on the CPU,
    mean and std 0.5, no baked-in normalization or softmax."""
    from timmx.core.model import PreparedModel

    channels = input_size[0]
    module.eval()  # (not chained: some timm layers' train() returns None)
    return PreparedModel(
        name="custom", module=module, input_size=tuple(input_size), batch_size=1,
        device="cpu", mean=(0.5,) * channels, std=(0.5,) * channels, normalize=False,
        softmax=False, interpolation="bilinear", crop_pct=1.0, num_classes=num_classes,
        num_features=num_features, labels=None, weights="random init",
    )  # fmt: skip
