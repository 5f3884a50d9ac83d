"""The comparison methods of the paper: GCN-ML, KGGR, curriculum labelling, IP-/FM-Mixup."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sarb.api import load_model
from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from sarb.config import resolve_config
from sarb.data.splits import load_splits
from sarb.engine import _cached_feature_maps
from sarb.methods import Method, build_method
from sarb.methods.augmentations import AUGMENTATIONS, Curriculum, ImageMixup
from sarb.methods.curriculum import select_pseudo_labels
from sarb.methods.mixup import mix_targets, mixup
from sarb.methods.objectives import FunctionLoss
from sarb.models.factory import DataInfo
from sarb.models.gcn import mlgcn_adjacency
from sarb.presets import PRESETS, split_augment
from tests.conftest import tiny_train_args

C, D_IN = 4, 128  # D_IN: channels of the cnn3 backbone's feature map
NEW_METHODS = ["gcn-ml", "kggr", "curriculum", "ip-mixup", "fm-mixup"]
LABELS = np.array(
    [[1, 1, 0, -1], [1, -1, 0, 1], [1, 1, -1, 0], [1, 0, 0, -1], [-1, 1, 0, 1], [0, 0, -1, 0]]
)
HOOKS = ("relabel", "mix_images", "mix_feature_maps")


def _method(
    name: str, labels: np.ndarray = LABELS, embeddings: np.ndarray | None = None, **overrides
) -> Method:
    cfg = resolve_config(
        None, method=name, backbone="cnn3", weights="random", trainable="all", feat_dim=6,
        hidden_dim=5, neck_pool=1, **overrides,
    )  # fmt: skip
    torch.manual_seed(0)
    return build_method(cfg, DataInfo(list("abcd"), embeddings, labels))


@pytest.mark.parametrize("embeddings", [None, np.random.default_rng(0).normal(size=(C, 7))])
@pytest.mark.parametrize("name", NEW_METHODS)
def test_method_gives_finite_logits_and_gradients(name: str, embeddings) -> None:
    method = _method(name, embeddings=embeddings)
    assert method.needs_images is (name == "ip-mixup")
    images = torch.randn(3, 3, 16, 16)
    logits = method.model(images)
    assert logits.shape == (3, C) and torch.isfinite(logits).all()
    targets = torch.tensor([[1, 0, -1, 1], [0, -1, 1, 0], [-1, 1, 0, 0]], dtype=torch.float32)
    # IP-Mixup mixes the images, FM-Mixup the feature maps, curriculum relabels: all inside
    loss, terms = method(images, targets, torch.tensor([0, 3, 5]), epoch=0)
    assert torch.isfinite(loss) and "bce" in terms
    loss.backward()
    params = dict(method.named_parameters())
    assert params
    for pname, p in params.items():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(float(p.grad.abs().sum()) > 0 for p in params.values())


@pytest.mark.parametrize("name", NEW_METHODS)
def test_method_trains_end_to_end(
    tmp_path: Path, tiny_dataset, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    calls: dict[str, int] = {}

    def spy(owner, attr: str, key: str) -> None:
        original = getattr(owner, attr)

        def wrapped(self, *args, **kwargs):
            calls[key] = calls.get(key, 0) + 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(owner, attr, wrapped)

    spy(Method, "forward", "forward")
    for entry in AUGMENTATIONS.list():
        for hook in HOOKS:
            spy(entry.build, hook, f"{entry.name}.{hook}")
    out = tmp_path / name
    extra = ["--curriculum-start", "0"] if name == "curriculum" else []
    assert main([*tiny_train_args(tiny_dataset, out, name), "--max-steps", "3", *extra]) == 0
    # the engine runs the method every step, and the method every hook of its augmentations
    augs = split_augment(PRESETS.create(name).parts()["augment"])
    assert len(augs) == (name not in ("gcn-ml", "kggr"))
    assert calls == {"forward": 3, **{f"{a}.{hook}": 3 for a in augs for hook in HOOKS}}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and math.isfinite(metrics["mAP"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert math.isfinite(log[-1]["loss"])
    payload = load_checkpoint(out / "best.pt")
    if name == "curriculum":  # one round at epoch 0: 10% of the unknown training labels
        assert log[-1]["pseudo_labels"] > 0
        # the pseudo-labels are the method's state, checkpointed beside the model
        pseudo = payload["augmentations"]["curriculum.pseudo_labels"]
        assert pseudo.shape[1] == 3 and int((pseudo != 0).sum()) == log[-1]["pseudo_labels"]
        assert not any("pseudo_labels" in k for k in payload["model"])
    # the checkpoint rebuilds without the training data (the label graphs come from it)
    stored = payload["model"]
    rebuilt = load_model(out, device="cpu").model.state_dict()
    assert rebuilt.keys() == stored.keys()
    assert all(torch.equal(rebuilt[k], stored[k]) for k in stored)


def test_mlgcn_adjacency_by_hand() -> None:
    # known positives: class 0 in rows 0-3, class 1 in rows 0, 2, 4, class 3 in rows 1, 4,
    # class 2 in none. P(j|i): row 0 = [1, 2/4, 0, 1/4], row 1 = [2/3, 1, 0, 1/3],
    # row 2 = 0, row 3 = [1/2, 1/2, 0, 1]. Edges at tau = 0.4: 0->1, 1->0, 3->0, 3->1.
    # Re-weighted (p = 0.25): neighbours share 0.25, self 0.75; class 2 keeps only 0.75, so its
    # degree is 0.75 and D^-1/2 A D^-1/2 turns its self-loop into 1; the others have degree 1.
    expected = torch.tensor(
        [
            [0.75, 0.25, 0.0, 0.0],
            [0.25, 0.75, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.125, 0.125, 0.0, 0.75],
        ]
    )
    adj = mlgcn_adjacency(LABELS)
    assert adj.dtype == torch.float32 and torch.isfinite(adj).all()
    torch.testing.assert_close(adj, expected)
    # unequal degrees: D^-1/2 A D^-1/2 entry-wise, here with p = 0.5 (class 2 degree 0.5)
    a = expected.clone().double()
    a[[0, 1, 3], [0, 1, 3]] = 0.5
    a[0, 1] = a[1, 0] = 0.5
    a[3, 0] = a[3, 1] = 0.25
    a[2, 2] = 0.5
    d = a.sum(1).rsqrt()
    torch.testing.assert_close(mlgcn_adjacency(LABELS, reweight=0.5), (d[:, None] * a * d).float())
    # the edge test is >= tau: P(1|0) = 0.5 is kept at tau = 0.5, dropped just above it
    assert mlgcn_adjacency(LABELS, threshold=0.5)[0, 1] > 0
    assert mlgcn_adjacency(LABELS, threshold=0.51)[0, 1] == 0


def test_pseudo_labels_by_hand() -> None:
    labels = torch.tensor([[1, 0, 0], [0, -1, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.float32)
    probs = torch.tensor(
        [[0.01, 0.95, 0.60], [0.30, 0.99, 0.52], [0.10, 0.45, 0.99], [0.02, 0.65, 0.55]]
    )
    none = torch.zeros(4, 3, dtype=torch.int8)
    # 9 unknown entries; round(0.25 * 9) = 2: (3, 0) with |0.02 - 0.5| = 0.48, (0, 1) with 0.45
    first = select_pseudo_labels(probs, labels, none, 0.25)
    assert first.nonzero().tolist() == [[0, 1], [3, 0]]
    assert first[0, 1] == 1 and first[3, 0] == -1
    # next round: 7 still unknown -> round(1.75) = 2 more, (2, 0) 0.40 and (1, 0) 0.20; the
    # first ones are kept
    second = select_pseudo_labels(probs, labels, first, 0.25)
    assert second.nonzero().tolist() == [[0, 1], [1, 0], [2, 0], [3, 0]]
    assert second[1, 0] == -1 and second[2, 0] == -1 and second[0, 1] == 1
    # known labels (even very confident wrong-looking ones: (1, 1) p = 0.99, known -1) never move
    everything = select_pseudo_labels(probs, labels, none, 1.0)
    assert bool(((everything != 0) == (labels == 0)).all())


def _batches(labels: torch.Tensor, fmaps: torch.Tensor):
    return lambda: [(fmaps[i : i + 4], labels[i : i + 4]) for i in range(0, len(labels), 4)]


def test_curriculum_rounds_accumulate_and_keep_known_labels() -> None:
    rng = np.random.default_rng(0)
    labels_np = rng.choice([1, -1, 0], size=(10, C), p=[0.2, 0.2, 0.6])
    method = _method(
        "curriculum", labels_np, curriculum_start=1, curriculum_every=2, curriculum_fraction=0.2
    )
    cur = method.augmentations["curriculum"]
    assert isinstance(cur, Curriculum)
    assert "augmentations.curriculum.pseudo_labels" in method.state_dict()
    assert not any("pseudo_labels" in k for k in method.model.state_dict())  # not the model's
    labels = torch.as_tensor(labels_np, dtype=torch.float32)
    batches = _batches(labels, torch.randn(10, D_IN, 3, 3))
    unknown = int((labels == 0).sum())
    method.on_epoch_start(0, batches)  # before curriculum_start: nothing
    assert int((cur.pseudo_labels != 0).sum()) == 0
    method.on_epoch_start(1, batches)
    first = cur.pseudo_labels.clone()
    k1 = round(0.2 * unknown)
    assert int((first != 0).sum()) == k1
    method.on_epoch_start(2, batches)  # not due (every 2 epochs)
    assert torch.equal(cur.pseudo_labels, first)
    method.on_epoch_start(3, batches)
    k2 = int(0.2 * (unknown - k1) + 0.5)
    assert int((cur.pseudo_labels != 0).sum()) == k1 + k2
    assert torch.equal(cur.pseudo_labels[first != 0], first[first != 0])  # accumulated
    assert not bool((cur.pseudo_labels[labels != 0] != 0).any())  # known entries untouched
    index = torch.tensor([7, 2, 5])
    targets = cur.relabel(index, labels[index])
    known = labels[index] != 0
    assert torch.equal(targets[known], labels[index][known])
    assert torch.equal(targets[~known], cur.pseudo_labels[index][~known].float())
    # a training step trains on the relabelled targets
    seen, loss = [], method.loss.fn

    def recording_loss(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return loss(logits, t)

    method.loss = FunctionLoss(recording_loss)
    method.model.takes_feature_maps = True
    method(torch.randn(3, D_IN, 3, 3), labels[index], index, epoch=3)
    assert len(seen) == 1 and torch.equal(seen[0], targets)


def test_mixed_partial_labels_by_hand() -> None:
    t1 = torch.tensor([[1.0, 1.0, -1.0, -1.0, 0.0, 1.0, 0.0, 0.6]])
    t2 = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0, 0.0, 0.0, -1.0]])
    mixed = mix_targets(t1, t2, 0.3)
    # pos+pos, pos+neg (BCE target lam), neg+pos (1 - lam), neg+neg, unknowns, soft 0.6 + neg
    expected = torch.tensor([[1.0, 0.3, 0.7, -1.0, 0.0, 0.0, 0.0, 0.18]])
    torch.testing.assert_close(mixed, expected)
    # lam = 1: a positive mixed with weight 0 stays a negative (-1), never "unknown" (0)
    torch.testing.assert_close(mix_targets(t1, t2, 1.0)[0, :4], torch.tensor([1.0, 1, -1, -1]))


def test_mixup_is_a_convex_combination_with_a_partner() -> None:
    torch.manual_seed(0)
    x = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1).expand(6, 3, 2, 2)
    t = torch.tensor([[1.0, -1.0]] * 3 + [[-1.0, 1.0]] * 3)
    mixed, mt = mixup(x, t, alpha=1.0)
    assert mixed.shape == x.shape and mt.shape == t.shape
    assert torch.all(mixed.amin((1, 2, 3)) == mixed.amax((1, 2, 3)))  # rows stay constant
    assert bool(((mt == 1) | (mt == -1) | ((mt > 0) & (mt < 1))).all())


def test_ip_mixup_disables_the_feature_cache(tmp_path: Path, tiny_dataset, capsys) -> None:
    def cached(method: str) -> tuple[Method, dict[str, torch.Tensor] | None]:
        cfg = resolve_config(
            None, method=method, dataset="manifest", train=str(tiny_dataset["train"]),
            test=str(tiny_dataset["test"]), backbone="cnn3", weights="random", trainable="none",
            feature_cache=True, image_size=32, cache_dir=str(tmp_path), embeddings="learned",
            feat_dim=8, neck_pool=1, workers=0,
        )  # fmt: skip
        splits = load_splits(cfg)
        info = DataInfo(splits.train.class_names, None, splits.train.labels)
        method = build_method(cfg, info)
        return method, _cached_feature_maps(cfg, method, splits, torch.device("cpu"))

    ip, maps = cached("ip-mixup")
    assert isinstance(ip.augmentations["ip-mixup"], ImageMixup)
    assert ip.needs_images and ip.model.backbone.fully_frozen
    assert maps is None
    assert "needs the images" in capsys.readouterr().err
    fm, maps = cached("fm-mixup")  # feature-map mixup works on cached maps
    assert not fm.needs_images and maps is not None
    assert set(maps) == {"train", "val", "test"}
    assert maps["test"].shape == (16, D_IN, 4, 4)


def _curriculum_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    cur, head, labels, fmaps = _curriculum_case()
    rows = torch.arange(rank, len(labels), world)  # the strided shard of the engine's eval loader
    cur.pseudo_label_round(head, _batches(labels[rows], fmaps[rows]))
    torch.save(cur.pseudo_labels, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def _curriculum_case() -> tuple[Curriculum, torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(-1, 2, (11, C), generator=gen).float()
    fmaps = torch.randn(11, D_IN, 3, 3, generator=gen)
    method = _method("curriculum", labels.numpy(), curriculum_fraction=0.3)
    return method.augmentations["curriculum"], method.model.head.eval(), labels, fmaps


def test_curriculum_round_is_the_same_on_two_processes(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_curriculum_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    cur, head, labels, fmaps = _curriculum_case()
    cur.pseudo_label_round(head, _batches(labels, fmaps))
    assert int((cur.pseudo_labels != 0).sum()) > 0
    assert torch.equal(r0, cur.pseudo_labels) and torch.equal(r1, cur.pseudo_labels)
