"""Cross-modal mapping with imputation of missing modalities (`fusion-mapping`).

projections        z_im = h_m(f_i^m) in R^d                   (modality m of item i)
maps               g_{a->b}: R^d -> R^d, one small MLP per ordered pair of modalities
imputation         z~_ib = z_ib where b is present, else mean_{a present} g_{a->b}(z_ia)
item vector        q_i = e_i + mean_b z~_ib ;  score(u, i) = <p_u, q_i>
loss               = BPR + align_weight * alignment(g_{a->b}(z_a), z_b)

The alignment is trained on (up to 512 of) the positive items of each batch that have both
modalities: InfoNCE
(`align_loss="infonce"`, default: the mapped vector must pick its own item's target among the
batch's, temperature `temperature`) or mean squared error (`"mse"`). The target side is
detached, so the maps learn to predict a modality rather than dragging the target towards the
source. At training and at inference an item whose modality b is missing (dataset masks) gets
b imputed from the modalities it has, instead of a zero vector; `impute(items, modality)`
exposes the imputation so its quality can be measured. With one modality there is nothing to
map and the model reduces to id + content (feature-mf-like).

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay, InfoNCE with temperature
0.2 and weight 0.1, 60 epochs (the benchmark early-stops on validation).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import FitData, register
from baselines.params import NON_NEGATIVE, POSITIVE, Options
from datasets.errors import FusebenchError

from .layers import ItemTowerFusion, ModalityEncoders, fusion_space, id_embeddings, mlp

ALIGN_LOSSES = ("infonce", "mse")
ALIGN_ITEMS = 512


def alignment_loss(mapped: torch.Tensor, target: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(mapped, target)
    # InfoNCE: row i of `mapped` should match row i of `target` among all rows of the batch
    logits = F.normalize(mapped, dim=-1) @ F.normalize(target, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(mapped), device=mapped.device))


class MappingModule(nn.Module):
    def __init__(self, n_users: int, encoders: ModalityEncoders, dim: int):
        super().__init__()
        self.encoders = encoders
        self.n_items = encoders.n_items
        self.user, self.item = id_embeddings(n_users, self.n_items, dim)
        n_mod = len(encoders)
        self.pairs = [(a, b) for a in range(n_mod) for b in range(n_mod) if a != b]
        self.maps = nn.ModuleList(mlp([dim, dim, dim]) for _ in self.pairs)

    def imputed(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(M, n, d): each modality's projection, imputed from the others where missing."""
        z = self.encoders(idx)
        present = self.encoders.presence(idx)
        if bool(present.min() > 0):
            return z
        return torch.stack([z[b] * present[b] + self.predict(z, present, b) * (1 - present[b])
                            for b in range(len(z))])

    def predict(self, z: torch.Tensor, present: torch.Tensor, b: int) -> torch.Tensor:
        """(n, d): modality b predicted as the mean of the maps from the present others."""
        mapped = torch.zeros_like(z[b])
        n_src = torch.zeros_like(present[b])
        for k, (a, target) in enumerate(self.pairs):
            if target == b:
                mapped = mapped + self.maps[k](z[a]) * present[a]
                n_src = n_src + present[a]
        return mapped / n_src.clamp(min=1.0)

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item.rows(idx)
        # mean over modalities after imputation; an item with none at all keeps only its id
        has_any = (self.encoders.presence(idx).sum(0) > 0).float()
        return ids + self.imputed(idx).mean(0) * has_any


@register
class MappingFusion(ItemTowerFusion):
    name = "fusion-mapping"
    zero_cold_ids = True
    _parameter_constraints = {"align_loss": [Options(*ALIGN_LOSSES)], "align_weight": [NON_NEGATIVE],
                              "temperature": [POSITIVE]}

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 60,
        align_loss: str = "infonce",
        align_weight: float = 0.1,
        temperature: float = 0.2,
        loss: str = "bpr",
        id_dropout: float = 0.0,
        normalize_features: bool = True,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.align_loss = align_loss
        self.align_weight = align_weight
        self.temperature = temperature
        self.loss = loss
        self.id_dropout = id_dropout
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {
            **fusion_space(trial),
            "align_loss": trial.suggest_categorical("align_loss", list(ALIGN_LOSSES)),
            "align_weight": trial.suggest_float("align_weight", 1e-3, 1.0, log=True),
        }

    def build(self, data: FitData) -> nn.Module:
        dim = int(self.embedding_size)
        return MappingModule(data.n_users, self.encoders(dim), dim)

    def extra_loss(self, users, pos, neg, p, q_pos, q_neg):
        m = self.module_
        if not self.align_weight or not m.pairs:
            return None
        # the batch's first ALIGN_ITEMS positives (batches are shuffled, so a random sample):
        # InfoNCE over every positive of a 2048 batch costs more than the ranking step
        items = torch.unique(pos[:ALIGN_ITEMS])
        z = m.encoders(items)
        present = m.encoders.presence(items)[..., 0] > 0  # (M, n)
        losses = []
        for k, (a, b) in enumerate(m.pairs):
            both = present[a] & present[b]
            if int(both.sum()) > 1:
                losses.append(alignment_loss(m.maps[k](z[a][both]), z[b][both].detach(),
                                             self.align_loss, float(self.temperature)))
        return self.align_weight * torch.stack(losses).mean() if losses else None

    @torch.no_grad()
    def impute(self, items: np.ndarray, modality: str) -> np.ndarray:
        """(len(items), d): modality `modality` of `items` predicted from their other
        modalities (as if it were missing), in the model's projected space."""
        m = self.module_
        names = self.used_modalities()
        if modality not in names:
            raise FusebenchError(f"modality {modality!r} is not used by this model ({', '.join(names)})")
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device_)
        return m.predict(m.encoders(idx), m.encoders.presence(idx), names.index(modality)).cpu().numpy()

    @torch.no_grad()
    def projected(self, items: np.ndarray, modality: str) -> np.ndarray:
        """(len(items), d): the actual projection of `modality` for `items`."""
        b = self.used_modalities().index(modality)
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device_)
        return self.module_.encoders.encode(b, idx).cpu().numpy()
