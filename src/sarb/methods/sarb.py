"""SSGRL and SARB: category-specific features (CSRL) -> GGNN -> head, with or without blending.

SSGRL (Chen et al., ICCV 2019) is the plain branch alone. SARB (Pu et al., AAAI 2022, SPEC §5)
adds two blended copies of the CSRL features of the batch: ILRB (instance level, a partner image's
features of its known-positive classes blended into this image's unknown ones) and PLRB (prototype
level, a K-means prototype of one unknown class blended in). The three branches go through
GGNN + head in one batched call, and the loss is the sum of their partial BCEs plus
lambda * the contrastive loss on the CSRL features.
"""

from __future__ import annotations

import torch
from torch import nn

from sarb.distributed import gather_cat
from sarb.losses import contrastive_loss, partial_bce
from sarb.methods.base import FeatureBatches, Method, MethodContext, Terms, register
from sarb.methods.blending import BlendWeight, ilrb, plrb
from sarb.methods.prototypes import batched_kmeans
from sarb.models.csrl import Neck, SemanticAttention, SemanticDecoupling
from sarb.models.ggnn import GGNN, adjacency_from_labels
from sarb.models.heads import SSGRLHead

LEARNED_EMBED_DIM = 300
MAX_POINTS_PER_CLASS = 4096  # K-means input per class: a seeded sample beyond this (memory bound)


class CategorySpecificModel(Method):
    """Neck -> CSRL (SD or SAM) -> GGNN -> head; optional ILRB / PLRB and contrastive loss."""

    def __init__(
        self,
        ctx: MethodContext,
        csrl: str = "sd",
        use_ilrb: bool = False,
        use_plrb: bool = False,
        learn_weights: bool = True,
        contrastive: bool = False,
    ):
        super().__init__()
        cfg = ctx.config
        c, d = ctx.num_classes, cfg.feat_dim
        self.neck = Neck(ctx.in_channels, d, cfg.neck_pool)
        if ctx.embeddings is not None:
            self.register_buffer("embeddings", torch.as_tensor(ctx.embeddings, dtype=torch.float32))
        else:
            self.embeddings = nn.Parameter(0.1 * torch.randn(c, LEARNED_EMBED_DIM))
        if csrl == "sd":
            self.csrl = SemanticDecoupling(d, self.embeddings.shape[1], cfg.hidden_dim)
        else:
            self.csrl = SemanticAttention(d, c)
        self.register_buffer("adjacency", adjacency_from_labels(ctx.train_labels))  # (C, C)
        self.ggnn = GGNN(d, steps=3)
        self.head = SSGRLHead(c, d, 2 * d)
        self.use_ilrb, self.use_plrb = use_ilrb, use_plrb
        self.contrastive_weight = cfg.contrastive_weight if contrastive else 0.0
        self.normalize = cfg.bce_normalize
        self.contrastive_negatives = cfg.contrastive_negatives
        self.blend_start, self.proto_every = cfg.blend_start, cfg.proto_every
        self.seed = cfg.seed
        if use_ilrb:
            self.alpha = BlendWeight(0.5, learnable=learn_weights)
        if use_plrb:
            self.beta = BlendWeight(0.5, learnable=learn_weights)
            k = cfg.num_prototypes
            self.register_buffer("prototypes", torch.zeros(c, k, d))  # (C, K, D)
            self.register_buffer("prototype_valid", torch.zeros(c, k, dtype=torch.bool))
            # whether any prototype is valid: kept on the host, so the step never reads the device
            self._plrb_ready = False
            self.register_load_state_dict_post_hook(
                lambda m, _: setattr(m, "_plrb_ready", bool(m.prototype_valid.any()))
            )

    def features(self, fmap: torch.Tensor) -> torch.Tensor:
        """CSRL features (B, C, D) of a backbone feature map (B, D_in, H, W)."""
        return self.csrl(self.neck(fmap), self.embeddings)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """GGNN + head: CSRL features (B', C, D) -> logits (B', C)."""
        return self.head(self.ggnn(x, self.adjacency), x)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(fmap))

    def loss(
        self, fmap: torch.Tensor, targets: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, Terms]:
        x = self.features(fmap)  # (B, C, D)
        xs, ts, names = [x], [targets], ["bce"]
        # epoch read only when it matters: under torch.compile each read is a guard (recompile)
        blending = (self.use_ilrb or self.use_plrb) and epoch >= self.blend_start
        if self.use_ilrb and blending:
            perm = torch.randperm(x.shape[0], device=x.device)
            xi, ti = ilrb(x, targets, self.alpha(), perm)
            xs, ts, names = [*xs, xi], [*ts, ti], [*names, "bce_ilrb"]
        if self.use_plrb and blending and self._plrb_ready:
            xp, tp = plrb(x, targets, self.beta(), self.prototypes, self.prototype_valid)
            xs, ts, names = [*xs, xp], [*ts, tp], [*names, "bce_plrb"]
        logits = self.classify(torch.cat(xs))  # one pass for all branches: (nB, C)
        terms = {
            name: partial_bce(lg, t, self.normalize)
            for name, lg, t in zip(names, logits.chunk(len(xs)), ts, strict=True)
        }
        loss = sum(terms.values())
        if self.contrastive_weight > 0:
            terms["contrastive"] = contrastive_loss(x, targets, self.contrastive_negatives)
            loss = loss + self.contrastive_weight * terms["contrastive"]
        return loss, {k: v.detach() for k, v in terms.items()}

    def on_epoch_start(self, epoch: int, train_batches: FeatureBatches) -> None:
        """Recompute the PLRB prototypes at ``blend_start`` and every ``proto_every`` epochs."""
        due = epoch >= self.blend_start and (epoch - self.blend_start) % self.proto_every == 0
        if self.use_plrb and due:
            self.refresh_prototypes(train_batches, seed=self.seed + epoch)

    @torch.no_grad()
    def refresh_prototypes(self, train_batches: FeatureBatches, seed: int) -> None:
        """K-means (K centres) per class over the CSRL features of its known-positive images.

        Only the (image, class) features with a known positive label are kept while iterating,
        so memory grows with the number of known positives, not with N x C. A class with more
        than ``MAX_POINTS_PER_CLASS`` points is clustered on a seeded random sample of that size
        (10 centres are estimated as well from 4,096 points as from COCO's 45,000 "person"
        images, and the padded K-means input stays bounded).
        """
        points, classes = [], []
        for fmap, labels in train_batches():
            x = self.features(fmap)  # (B, C, D)
            pos = labels == 1  # (B, C)
            points.append(x[pos])  # (P_b, D)
            classes.append(pos.nonzero()[:, 1])  # (P_b,) class of each point
        # every rank holds a shard of the training set: all ranks cluster the same points
        points_t, classes_t = gather_cat(torch.cat(points)), gather_cat(torch.cat(classes))
        c, k, d = self.prototypes.shape
        gen = torch.Generator(device=points_t.device).manual_seed(seed)
        # group the points by class in a random order, then keep the first MAX of each class
        shuffle = torch.randperm(len(classes_t), generator=gen, device=points_t.device)
        order = shuffle[torch.argsort(classes_t[shuffle], stable=True)]
        counts = torch.bincount(classes_t, minlength=c)  # (C,)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(order), device=order.device) - starts[classes_t[order]]
        keep = rank < MAX_POINTS_PER_CLASS
        order, rank = order[keep], rank[keep]
        counts = counts.clamp(max=MAX_POINTS_PER_CLASS)
        padded = points_t.new_zeros(c, max(int(counts.max()), 1), d)  # (C, maxN, D)
        padded[classes_t[order], rank] = points_t[order]
        centres, valid = batched_kmeans(padded, counts, k, generator=gen)
        self.prototypes.copy_(centres)
        self.prototype_valid.copy_(valid)
        self._plrb_ready = bool(valid.any())

    def logged_values(self) -> dict[str, float]:
        out = {}
        if self.use_ilrb:
            out["a"] = float(self.alpha().detach())
        if self.use_plrb:
            out["b"] = float(self.beta().detach())
            out["prototype_classes"] = int(self.prototype_valid.any(1).sum())
        return out


def _variant(csrl: str, ilrb_: bool, plrb_: bool, learn: bool = True, contrastive: bool = True):
    def build(ctx: MethodContext) -> Method:
        return CategorySpecificModel(ctx, csrl, ilrb_, plrb_, learn, contrastive)

    return build


_SARB = "Pu et al., AAAI 2022"
register("ssgrl", "Chen et al., ICCV 2019", "SD + GGNN + head, partial BCE, no blending")(
    _variant("sd", False, False, contrastive=False)
)
register("sarb", _SARB, "SD + ILRB + PLRB + contrastive loss (the paper's method)")(
    _variant("sd", True, True)
)
register("sarb-sam", _SARB, "SARB with semantic attention (SAM, ADD-GCN) instead of SD")(
    _variant("sam", True, True)
)
register("sarb-ilrb", _SARB, "ablation: ILRB only")(_variant("sd", True, False))
register("sarb-plrb", _SARB, "ablation: PLRB only")(_variant("sd", False, True))
register("sarb-ilrb-fixed", _SARB, "ablation: ILRB only, a fixed at 0.5")(
    _variant("sd", True, False, learn=False)
)
register("sarb-plrb-fixed", _SARB, "ablation: PLRB only, b fixed at 0.5")(
    _variant("sd", False, True, learn=False)
)

__all__ = ["CategorySpecificModel"]
