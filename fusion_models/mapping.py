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
        return torch.stack([z[b] * present[b] + self.predict(z, present, b) * (1 - present[b]) for b in range(len(z))])

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
    """Cross-modal mapping: each modality predicted from the others, imputing missing features.

    One small MLP g_a->b per ordered pair of modalities is trained to map projection a onto
    projection b (the target detached) on the batch's positive items that have both; an item
    whose modality b is missing gets b imputed as the mean of the maps from the modalities it
    has, in training and at inference. q_i = e_i + mean_b z~_ib, score(u, i) = <e_u, q_i>.
    `impute(items, modality)` exposes the imputation. With one modality there is nothing to map.
    Item id embeddings of items without training interactions are zeroed and kept at zero, so a
    cold-start item is scored by its content. A fusion strategy of this benchmark, not a
    published model.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the id embeddings and of every modality's projection. Accepted: int >= 1.
        Tuned by `search_space`.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0. Tuned by `search_space`.
    weight_decay : float, default 0.0
        Adam's L2 weight decay. Accepted: real >= 0. Tuned by `search_space`.
    batch_size : int, default 2048
        Training pairs per step. Accepted: int >= 1.
    epochs : int, default 60
        Epoch cap (the benchmark's protocol sets it and early-stops on validation).
        Accepted: int >= 1.
    align_loss : str, default "infonce"
        The alignment loss: "infonce" (the mapped vector must pick its own item's target among
        the batch's) or "mse". Accepted: one of infonce, mse. Tuned by `search_space`.
    align_weight : float, default 0.1
        Weight of the alignment term added to the ranking loss (0: maps untrained).
        Accepted: real >= 0. Tuned by `search_space`.
    temperature : float, default 0.2
        InfoNCE's temperature (unused with "mse"). Accepted: real > 0.
    loss : str, default "bpr"
        "bpr" (pairwise, one uniform negative per training pair), "softmax" (cross-entropy of
        each positive against every item) or "sampled" (softmax over the batch's distinct
        positives and sampled negatives, logQ-corrected). Accepted: one of bpr, softmax,
        sampled. Tuned by `search_space` (bpr or sampled).
    id_dropout : float, default 0.0
        In training, each item id embedding of a batch is zeroed with this probability
        (DropoutNet), so the model also learns to rank items by content alone. Accepted: real
        in [0, 1). Tuned by `search_space`.
    normalize_features : bool, default True
        L2-normalise each modality per item before projecting it.
    modalities : str, default "all"
        The feature sets used: "all" or comma-separated names or family prefixes
        (`baselines.modalities`); the names are checked against the dataset in `init`.

    Attributes
    ----------
    modalities_ : list of str
        The feature sets selected, in selection order.
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        `user` and `item` id embeddings, the projection heads `encoders` (features as
        non-persistent buffers) and the cross-modal `maps`.

    References
    ----------
    Baltrušaitis, Ahuja, Morency. Multimodal Machine Learning: A Survey and Taxonomy. IEEE
    TPAMI 41(2), 2019 (translation between modalities).

    van den Oord, Li, Vinyals. Representation Learning with Contrastive Predictive Coding.
    arXiv:1807.03748, 2018 (InfoNCE).

    Volkovs, Yu, Poutanen. DropoutNet: Addressing Cold Start in Recommender Systems. NeurIPS
    2017 (`id_dropout`).

    Yi et al. Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations.
    RecSys 2019 (`loss="sampled"`).
    """

    name = "fusion-mapping"
    zero_cold_ids = True
    _parameter_constraints = {
        "align_loss": [Options(*ALIGN_LOSSES)],
        "align_weight": [NON_NEGATIVE],
        "temperature": [POSITIVE],
    }

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
                losses.append(
                    alignment_loss(m.maps[k](z[a][both]), z[b][both].detach(), self.align_loss, float(self.temperature))
                )
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
