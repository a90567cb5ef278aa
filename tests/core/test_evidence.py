"""Evidence: live weights, real photos, --verify-data, held-out calibration slices, --eval-data
(end to end on a fake format, and its bad inputs)."""

import json

import pytest
import torch

import timmx
from timmx._torch_env import import_timm
from timmx.core.calibration import held_out_count
from timmx.testing import live_weights, real_photos, residual_ratios
from timmx.testing.images import photo_batch

MIN_RATIO = 0.05


def test_real_photos_ship_with_the_packages():
    photos = real_photos()
    assert len(photos) >= 18, [name for name, _ in photos]
    for name, image in photos:
        assert image.mode == "RGB" and min(image.size) >= 64, (name, image.size)


@pytest.mark.parametrize(
    "model", ["test_resnet", "test_convnext", "test_vit", "test_efficientnet", "test_byobnet"]
)
def test_live_weights_wake_every_branch(model):
    timm = import_timm()
    torch.manual_seed(0)
    net = timm.create_model(model).eval()
    config = timm.data.resolve_data_config({}, model=net)
    x = photo_batch(tuple(config["input_size"]), config, 4, seed=99)
    live_weights(net)
    ratios = residual_ratios(net, x)
    low = min((r for _, r in ratios), default=1.0)
    assert low >= MIN_RATIO, (
        f"a residual branch is nearly dead: {sorted(ratios, key=lambda t: t[1])[:3]}"
    )
    with torch.no_grad():
        logits = net(x)
    assert torch.isfinite(logits).all()
    assert float(logits.abs().max()) <= 40, f"logits out of range: {float(logits.abs().max())}"
    assert float(logits.std()) >= 1.0, f"flat logits: std {float(logits.std())}"


def test_random_init_is_what_live_weights_fix():
    """The premise: timm's ResNet init zeroes the last norm of every residual branch."""
    timm = import_timm()
    net = timm.create_model("test_resnet").eval()
    x = torch.rand(2, 3, 160, 160)
    assert min(r for _, r in residual_ratios(net, x)) == 0.0


def test_live_weights_are_deterministic():
    timm = import_timm()
    a = live_weights(timm.create_model("test_resnet"), seed=3).state_dict()
    b = live_weights(timm.create_model("test_resnet"), seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "live_weights is not deterministic"


def test_verify_data_verifies_on_real_photos(export_json, tmp_path, photos, live_checkpoint):
    checkpoint = live_checkpoint("test_resnet")
    data = export_json(
        "onnx", "test_resnet", "-o", tmp_path / "m.onnx", "--checkpoint", checkpoint,
        "--verify-data", photos,
    )  # fmt: skip
    verify = data["verify"]
    assert verify["passed"], verify
    assert "--verify-data" in verify["inputs"], verify["inputs"]
    assert len(verify["batch_sizes"]) == 16, "not every photo (up to 16) was verified"


def test_calibration_folder_holds_out_verification_images(tmp_path):
    from timmx.core.calibration import _calibration_files
    from timmx.core.job import CommonOptions, ExportJob
    from timmx.testing import write_photo_folder

    folder = write_photo_folder(tmp_path / "photos")
    job = ExportJob(backend=None, model_name="m", common=CommonOptions(), options=None)
    pool = _calibration_files(job, folder)
    held = job.verify_files
    assert held and len(held) == held_out_count(len(pool) + len(held)), held
    assert not set(held) & set(pool), "verification images are also calibration images"
    assert "held out" in job.verify_source


def test_quantized_verification_uses_the_held_out_slice(
    export_json, tmp_path, photos, live_checkpoint
):
    checkpoint = live_checkpoint("test_resnet")
    data = export_json(
        "litert", "test_resnet", "-o", tmp_path / "m.tflite", "--checkpoint", checkpoint,
        "--mode", "int8", "--calibration-data", photos,
    )  # fmt: skip
    assert "held out of --calibration-data" in data["verify"]["inputs"], data["verify"]
    assert data["verify"]["passed"], data["verify"]


# ---------------------------------------------------------------- --eval-data


def _class_tree(root, names, per_class=2):
    from timmx.testing import real_photos

    photos = [image for _, image in real_photos()]
    for c, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            photos[(c * per_class + k) % len(photos)].resize((64, 64)).save(folder / f"{k}.png")
    return root


def test_eval_data_end_to_end_and_json(fake_backend, tmp_path):
    fake_backend("ok")
    tree = _class_tree(tmp_path / "eval", ["0", "1", "2"], per_class=3)
    result = timmx.export("fake", "test_resnet", output=tmp_path / "m.fake", eval_data=tree)
    ev = result.to_dict()["eval"]
    assert ev["n"] == 9 and ev["classes"] == 3, ev
    assert ev["top1_torch"] == ev["top1_artifact"] and ev["agreement"] == 100.0, ev
    assert ev["drop"] == 0.0 and ev["passed"] is None, ev
    assert set(ev) >= {
        "n",
        "top1_torch",
        "top1_artifact",
        "top5_torch",
        "top5_artifact",
        "agreement",
        "drop",
    }
    json.dumps(result.to_dict())


def test_eval_data_gate_refuses_a_worse_artifact(fake_backend, tmp_path, live_checkpoint):
    fake_backend("shuffle")  # every prediction becomes the next class
    tree = tmp_path / "eval"
    net = import_timm().create_model("test_resnet")
    live_weights(net)
    # label each photo with what PyTorch predicts, so PyTorch scores 100%
    from timmx.testing import real_photos

    config = import_timm().data.resolve_data_config({}, model=net)
    transform = import_timm().data.create_transform(**config)
    checkpoint = tmp_path / "live.pth"
    torch.save(net.state_dict(), checkpoint)
    for name, image in real_photos()[:6]:
        with torch.no_grad():
            label = int(net.eval()(transform(image)[None]).argmax())
        (tree / str(label)).mkdir(parents=True, exist_ok=True)
        image.save(tree / str(label) / f"{name}.png")
    target = tmp_path / "m.fake"
    target.write_bytes(b"previous")
    with pytest.raises(timmx.AccuracyError, match="more than --max-accuracy-drop 1") as info:
        timmx.export(
            "fake",
            "test_resnet",
            output=target,
            checkpoint=checkpoint,
            eval_data=tree,
            verify=False,
            max_accuracy_drop=1.0,
        )
    assert info.value.report.top1_torch == 100.0 and info.value.report.drop == 100.0
    assert target.read_bytes() == b"previous", "the previous artifact was replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "live.pth", "m.fake"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("empty", "holds no class folders"),
        ("names", "match no class of the model"),
        ("too-many", "the model has 10 classes"),
        ("undecodable", "cannot decode image"),
        ("synsets-small-model", "not ImageNet's 1000"),
        ("labels-txt-missing", "not listed in"),
    ],
)
def test_eval_data_bad_inputs(fake_backend, tmp_path, layout, message):
    fake_backend("ok")
    tree = tmp_path / "eval"
    tree.mkdir()
    if layout == "names":
        _class_tree(tree, ["cat", "dog"])
    elif layout == "too-many":
        _class_tree(tree, ["3", "12"])
    elif layout == "undecodable":
        _class_tree(tree, ["0", "1"])
        (tree / "1" / "broken.png").write_bytes(b"not an image")
    elif layout == "synsets-small-model":
        _class_tree(tree, ["n01440764", "n01443537"])
    elif layout == "labels-txt-missing":
        _class_tree(tree, ["cat", "dog"])
        (tree / "labels.txt").write_text("cat\nbird\n")
    target = tmp_path / "m.fake"
    with pytest.raises(timmx.ConfigurationError, match=message):
        timmx.export("fake", "test_resnet", output=target, eval_data=tree, num_classes=10)
    assert not target.exists()


def test_eval_labels_txt_and_synsets_map_classes(fake_backend, tmp_path):
    fake_backend("ok")
    named = _class_tree(tmp_path / "named", ["dog", "cat"])
    (named / "labels.txt").write_text("cat\ndog\n")
    result = timmx.export(
        "fake", "test_resnet", output=tmp_path / "a.fake", eval_data=named, num_classes=2
    )
    assert result.evaluation.n == 4 and result.evaluation.classes == 2
    synsets = _class_tree(tmp_path / "syn", ["n01440764", "n01443537"])
    result = timmx.export("fake", "test_resnet", output=tmp_path / "b.fake", eval_data=synsets)
    assert result.evaluation.n == 4


def test_eval_flags_need_eval_data(cli, tmp_path):
    result = cli("export", "onnx", "test_resnet", "-o", tmp_path / "m.onnx", "--eval-samples", "3")
    assert result.exit_code == 2 and "add --eval-data" in result.stderr, result.stderr
