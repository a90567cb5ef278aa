"""Model preparation: normalization/softmax wrapper, stats, checkpoints, input sizes."""

import pytest
import torch
from safetensors.torch import save_file

from timmx._torch_env import import_timm
from timmx.core.job import CommonOptions
from timmx.core.model import channel_stats, prepare_model


def test_normalize_and_softmax_wrapper_matches_manual_preprocessing():
    prepared = prepare_model("test_resnet", CommonOptions(normalize=True, softmax=True))
    raw = prepare_model("test_resnet", CommonOptions())
    raw.module.load_state_dict(prepared.module.model.state_dict())
    x01 = prepared.sample_input()
    assert float(x01.min()) >= 0.0 and float(x01.max()) <= 1.0, "normalized input not in [0, 1]"
    mean = torch.tensor(prepared.mean).view(1, -1, 1, 1)
    std = torch.tensor(prepared.std).view(1, -1, 1, 1)
    expected = raw.run((x01 - mean) / std).softmax(-1)
    got = prepared.run(x01)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(1)), "softmax output does not sum to 1"
    assert not prepared.module.training and not prepared.module.model.training, "not eval mode"


def test_sample_input_without_normalize_is_normalized_images():
    prepared = prepare_model("test_resnet", CommonOptions())
    x = prepared.sample_input(batch_size=2)
    assert x.shape == (2, 3, 160, 160), x.shape
    assert float(x.min()) < 0.0, "unnormalized input should contain negatives after (x-mean)/std"
    again = prepared.sample_input(batch_size=2)
    assert torch.equal(x, again), "sample input is not seeded"


def test_grayscale_averages_stats_and_builds_one_channel_model():
    prepared = prepare_model("test_resnet", CommonOptions(in_chans=1, normalize=True))
    assert prepared.input_size[0] == 1, prepared.input_size
    timm = import_timm()
    rgb_mean = timm.data.resolve_data_config({}, model=prepared.module.model)["mean"]
    assert prepared.mean == pytest.approx((sum(rgb_mean) / 3,)), prepared.mean
    assert prepared.module.mean.shape == (1, 1, 1, 1), "wrapper mean has wrong shape"
    assert prepared.run(prepared.sample_input()).shape == (1, 1000)


def test_zero_mean_and_custom_std_are_honoured():
    common = CommonOptions(normalize=True, mean=(0.0, 0.0, 0.0), std=(1.0, 2.0, 4.0))
    prepared = prepare_model("test_resnet", common)
    assert prepared.mean == (0.0, 0.0, 0.0), "zero mean replaced by defaults"
    assert torch.equal(prepared.module.std.flatten(), torch.tensor([1.0, 2.0, 4.0]))
    assert prepared.metadata()["mean"] == "[0.0, 0.0, 0.0]", prepared.metadata()


def test_channel_stats():
    assert channel_stats((0.2, 0.4, 0.6), 1) == pytest.approx((0.4,))
    assert channel_stats((0.2, 0.4, 0.6), 3) == (0.2, 0.4, 0.6)


def test_input_size_and_num_classes():
    common = CommonOptions(input_size=(3, 96, 128), num_classes=7, batch_size=3)
    prepared = prepare_model("test_vit", common)
    assert prepared.input_shape == (3, 3, 96, 128), prepared.input_shape
    assert prepared.run(prepared.sample_input()).shape == (3, 7)
    assert prepared.labels is None, "ImageNet labels attached to a 7-class head"


def test_imagenet_labels_are_known():
    prepared = prepare_model("test_resnet", CommonOptions())
    assert prepared.labels is not None and len(prepared.labels) == 1000, "labels missing"


def _trained_weights(num_classes: int = 5) -> dict:
    timm = import_timm()
    torch.manual_seed(1)
    model = timm.create_model("test_resnet", num_classes=num_classes)
    return {
        k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "module_prefix", "safetensors"])
def test_checkpoint_layouts_load(tmp_path, layout):
    weights = _trained_weights()
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pth")
    if layout == "safetensors":
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    elif layout == "bare":
        torch.save(weights, path)
    elif layout == "module_prefix":
        torch.save({f"module.{k}": v for k, v in weights.items()}, path)
    else:
        torch.save({layout: weights, "epoch": 3}, path)
    prepared = prepare_model("test_resnet", CommonOptions(checkpoint=path, num_classes=5))
    loaded = prepared.module.state_dict()
    for key, value in weights.items():
        assert torch.equal(loaded[key], value), f"{key} not loaded from {layout} checkpoint"
    assert prepared.weights == f"checkpoint {path.name}", prepared.weights
