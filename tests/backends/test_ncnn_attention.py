"""ncnn: timm's attention (and Swin's windows) rewritten in 4-D ops reach ncnn through pnnx.

Each model is exported with fp32 weights and run in the ncnn runtime on live weights and
photographs; the rewritten copy must also match the original module in PyTorch exactly.
"""

import json
from pathlib import Path

import pytest
from conftest import assert_passed

from timmx._torch_env import import_timm
from timmx.backends.ncnn import ncnn_friendly

# (model, export arguments, modules rewritten): the smallest shapes each model allows.
REWRITTEN = [
    ("test_vit", [], 6),  # timm.layers.Attention
    ("xcit_nano_12_p16_224", ["--input-size", "3", "64", "64"], 13),  # XCA + Fourier positions
    ("edgenext_xx_small", ["--input-size", "3", "64", "64"], 4),  # XCA + Fourier positions
    # Swin's windows (7) must tile every stage (56, 28, 14, 7): 224 is its smallest input
    ("swin_tiny_patch4_window7_224", [], 15),  # 12 window attentions + 3 patch mergings
    # ConvNeXt-V2's GRN: a two-axis torch.norm and addcmul, left in a pnnx.Expression otherwise
    ("convnextv2_atto", ["--input-size", "3", "64", "64"], 12),
    # EVA's attention: the same 5-D split plus rotary embeddings (strided slices, a 5-D stack)
    ("eva02_tiny_patch14_224", [], 13),  # 12 attentions + the rotary embedding as a constant
    ("pvt_v2_b0", ["--input-size", "3", "64", "64"], 8),  # spatial-reduction attention's kv split
    ("crossvit_tiny_240", [], 16),  # 15 attentions + the heads' mean (pnnx reduced a wrong axis)
]


@pytest.mark.parametrize(("model", "args", "count"), REWRITTEN)
def test_rewritten_attention_runs_in_ncnn(
    export_json, tmp_path: Path, model: str, args: list[str], count: int
) -> None:
    out = tmp_path / "out"
    data = export_json("ncnn", model, "-o", out, "--no-fp16", *args)
    assert_passed(data)
    assert data["verify"]["top1_agree"] == 1.0, f"top-1 must agree: {data['verify']}"
    meta = json.loads((out / "timmx.json").read_text())
    assert meta["attention_rewritten"] == str(count), f"rewrites: {meta['attention_rewritten']}"


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("swin_tiny_patch4_window7_224", 224),
        ("xcit_nano_12_p16_224", 64),
        ("cait_xxs24_224", 224),
        ("convnextv2_atto", 224),
        ("eva02_tiny_patch14_224", 224),
        ("pvt_v2_b0", 224),
        ("crossvit_tiny_240", 240),
    ],
)
def test_rewrites_match_the_original(model: str, size: int) -> None:
    import torch

    timm = import_timm()
    torch.manual_seed(0)
    kwargs = {} if size == 224 else {"img_size": size}
    net = timm.create_model(model, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    rewritten, count = ncnn_friendly(net, x)
    assert count > 0 and rewritten is not net, "nothing was rewritten"
    with torch.no_grad():
        expected, got = net(x), rewritten(x)
        # a batch of two takes timm's own path (ncnn has no batch axis)
        pair = torch.cat([x, x.flip(-1)])
        assert torch.allclose(rewritten(pair), net(pair), atol=1e-5), "batch fallback differs"
    assert torch.allclose(got, expected, atol=1e-5), f"max diff {(got - expected).abs().max()}"
    assert all("forward" not in vars(m) and "_attn" not in vars(m) for m in net.modules()), (
        "the original model was modified"
    )


def test_levit_strided_downsample_runs_in_ncnn(export_json, tmp_path: Path) -> None:
    # LeViT's Downsample slices x[:, ::2, ::2], which pnnx cannot lower; the rewrite is a 1x1
    # max pool of stride 2. timm's own initialization, not live weights: live LeViT weights are
    # ill-conditioned (PyTorch fp32 against fp64: cosine 0.992), so no fp32 runtime matches them.
    import torch

    timm = import_timm()
    torch.manual_seed(0)
    checkpoint = tmp_path / "levit.pth"
    torch.save(timm.create_model("levit_128s").state_dict(), checkpoint)
    out = tmp_path / "out"
    data = export_json("ncnn", "levit_128s", "-o", out, "--no-fp16", "--checkpoint", checkpoint)
    assert_passed(data)
    assert data["verify"]["top1_agree"] == 1.0, f"top-1 must agree: {data['verify']}"
    meta = json.loads((out / "timmx.json").read_text())
    assert meta["attention_rewritten"] == "2", f"rewrites: {meta['attention_rewritten']}"
