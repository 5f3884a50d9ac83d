"""timm backbones (``--backbone timm/NAME[@STRIDE]``): levels, weights, freezing, training."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from sarb.cli import main
from sarb.errors import SarbError
from sarb.models.backbones import create_backbone
from tests.conftest import tiny_train_args

timm = pytest.importorskip("timm", reason="the optional timm extra: pip install 'sarb[timm]'")


def _top(name: str) -> str:
    """``net.model.layer4.0.conv1.weight`` -> ``layer4``; ``net.model.blocks.5.0...`` ->
    ``blocks.5`` (EfficientNet's stages)."""
    parts = name.split(".")[2:]
    return ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]


def test_feature_map_at_the_chosen_stride():
    torch.manual_seed(0)
    last = create_backbone("timm/convnext_atto", "random", "all").eval()
    s16 = create_backbone("timm/convnext_atto@16", "random", "all").eval()
    assert (last.out_channels, last.stride, s16.out_channels, s16.stride) == (320, 32, 160, 16)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert last(x).shape == (2, 320, 2, 3) and s16(x).shape == (2, 160, 4, 6)
    # the layers after the chosen level are pruned: they neither run nor train
    assert not any(n.startswith("net.model.stages.3") for n, _ in s16.named_parameters())
    assert last.weights_tag.startswith("random-")


def test_paper_freezing_trains_the_last_stage():
    bb = create_backbone("timm/resnet18", "random", "paper")
    assert {_top(n) for n, p in bb.named_parameters() if p.requires_grad} == {"layer4"}
    bb.train()
    assert not bb.net.model.layer3[1].bn2.training and bb.net.model.layer4[0].bn1.training
    eff = create_backbone("timm/efficientnet_b0", "random", "paper")  # stages of blocks
    trained = {_top(n) for n, p in eff.named_parameters() if p.requires_grad}
    assert trained == {"blocks.5", "blocks.6"}  # after the stride-16 level (blocks.4)
    assert create_backbone("timm/resnet18", "random", "none").fully_frozen


def test_model_mean_and_std_are_converted_from_imagenet_normalisation():
    """A model trained on [-1, 1] inputs (mean = std = 0.5) sees exactly those."""
    bb = create_backbone("timm/tf_efficientnet_lite0", "random", "all")
    pixels = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    cfg = bb.net.pretrained_cfg
    want_mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    want_std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    seen = (pixels - mean) / std * bb._in_scale + bb._in_shift
    torch.testing.assert_close(seen, (pixels - want_mean) / want_std)


def test_timm_checkpoint_file_and_errors(tmp_path):
    torch.manual_seed(1)
    net = timm.create_model("resnet18")  # a full timm checkpoint, classifier included
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    bb = create_backbone("timm/resnet18", str(path), "paper")
    assert torch.equal(bb.net.model.layer4[1].conv2.weight, net.layer4[1].conv2.weight)
    assert bb.weights_tag.startswith("file-")
    torch.save(timm.create_model("resnet10t").state_dict(), tmp_path / "other.pth")
    with pytest.raises(SarbError, match=r"other.pth: not timm weights of resnet18"):
        create_backbone("timm/resnet18", str(tmp_path / "other.pth"))
    with pytest.raises(SarbError, match="missing.pth: weights file not found"):
        create_backbone("timm/resnet18", str(tmp_path / "missing.pth"))
    with pytest.raises(SarbError, match="timm cannot build it.*Unknown model"):
        create_backbone("timm/no_such_net", "random")
    with pytest.raises(SarbError, match=r"stride '7' is not one of .*\(2, 4, 8, 16, 32\)"):
        create_backbone("timm/resnet18@7", "random")


def test_offline_pretrained_weights_are_a_one_line_error(tmp_path, monkeypatch):
    """Offline and not cached: a one-line error saying how to go on, never random weights."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SarbError) as err:
        create_backbone("timm/convnext_atto", "auto")
    text = str(err.value)
    assert "no pretrained weights for timm/convnext_atto" in text and "convnext_atto." in text
    assert "--weights PATH or --weights random" in text and "\n" not in text


def test_missing_timm_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import -> ImportError
    with pytest.raises(SarbError, match=r"pip install 'sarb\[timm\]'"):
        create_backbone("timm/resnet18", "random")


def test_train_end_to_end_with_a_timm_backbone(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    args = tiny_train_args(tiny_dataset, out, "sarb")
    args[args.index("--backbone") + 1] = "timm/convnext_atto@16"
    args[args.index("--trainable") + 1] = "paper"
    assert main([*args, "--max-steps", "3"]) == 0
    summary = "model timm/convnext_atto@16 (random weights, trainable: paper)"
    assert summary in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert (out / "best.pt").is_file()
