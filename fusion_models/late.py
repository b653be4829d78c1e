"""Late fusion (`fusion-late`): one scorer per modality plus the id scorer, mixed by learned
softmax weights.

s_id(u, i) = <e_u, e_i>                    (matrix factorisation)
s_m(u, i)  = <p_u^m, h_m(f_i^m)>           (per modality m: a user embedding for that
                                            modality and a linear projection of the item's
                                            features, L2-normalised per item first)
score      = sum_k softmax(w)_k * s_k      k over (id, modality 1, ..., modality M)

`w` (M+1 logits, starting at 0: equal weights) is learned with the rest by BPR;
`modality_weights()` returns the softmax weights by name ("id" and the modality names), so a
run can say how much each modality contributed.

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay, 60 epochs (the benchmark
early-stops on validation; the cap bounds a default run's time, see docs/models.md).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.base import FitData, register
from baselines.torch_base import item_rows

from .layers import FusionRecommender, ModalityEncoders, fusion_space, id_embeddings

ID = "id"


class LateModule(nn.Module):
    def __init__(self, n_users: int, encoders: ModalityEncoders, dim: int):
        super().__init__()
        self.encoders = encoders
        n_mod = len(self.encoders)
        self.user, self.item = id_embeddings(n_users, encoders.n_items, dim)
        # one user embedding table per modality, stored as (n_modalities, n_users, dim)
        self.user_mod = nn.Parameter(torch.empty(n_mod, n_users, dim))
        for m in range(n_mod):
            nn.init.xavier_normal_(self.user_mod.data[m])
        self.logits = nn.Parameter(torch.zeros(n_mod + 1))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def item_vectors(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(M+1, n, dim): the id embedding then each modality's projection."""
        ids = self.item.rows(idx)
        return torch.cat([ids.unsqueeze(0), self.encoders(idx)], dim=0)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """(M+1, B, dim), weighted by the softmax weights (so one dot product per pair)."""
        u = torch.cat([self.user(users).unsqueeze(0), self.user_mod[:, users]], dim=0)
        return u * self.weights()[:, None, None]

    def pair_scores(self, users, items_vec):
        """items_vec (M+1, B, dim) aligned with users -> (B,)."""
        return (self.user_vectors(users) * items_vec).sum(dim=(0, 2))


@register
class LateFusion(FusionRecommender):
    """Late fusion: one scorer per modality plus the id scorer, mixed by learned softmax weights.

    s_id(u, i) = <e_u, e_i>, s_m(u, i) = <p_u^m, h_m(f_i^m)> with a user embedding per modality,
    and score = sum_k softmax(w)_k s_k over (id, modality 1, ..., modality M); the M + 1 logits
    w start at 0 (equal weights) and are learned with the rest. `modality_weights()` reads the
    learned mix by name. Item id embeddings of items without training interactions are zeroed
    and kept at zero, so a cold-start item is scored by its content. A fusion strategy of this
    benchmark, not a published model.

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
        `user` and `item` id embeddings, the per-modality user embeddings `user_mod`
        (M, n_users, d), the projection heads `encoders` (features as non-persistent buffers)
        and the mixing `logits` (M + 1).

    References
    ----------
    Baltrušaitis, Ahuja, Morency. Multimodal Machine Learning: A Survey and Taxonomy. IEEE
    TPAMI 41(2), 2019 (late fusion).

    Volkovs, Yu, Poutanen. DropoutNet: Addressing Cold Start in Recommender Systems. NeurIPS
    2017 (`id_dropout`).

    Yi et al. Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations.
    RecSys 2019 (`loss="sampled"`).
    """

    name = "fusion-late"
    zero_cold_ids = True

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 60,
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
        self.loss = loss
        self.id_dropout = id_dropout
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return fusion_space(trial)

    def build(self, data: FitData) -> nn.Module:
        dim = int(self.embedding_size)
        return LateModule(data.n_users, self.encoders(dim), dim)

    def pair_loss(self, users, pos, neg):
        m = self.module_
        q_pos, q_neg = item_rows(m.item_vectors, m.encoders.n_items, pos, neg, dim=1)
        return self.pair_objective(m.pair_scores(users, q_pos), m.pair_scores(users, q_neg))

    def candidate_scores(self, users, idx):
        m = self.module_
        u = m.user_vectors(users)  # (K, B, d)
        q = m.item_vectors(idx)  # (K, n, d)
        return torch.einsum("kbd,knd->bn", u, q)

    def modality_weights(self) -> dict[str, float]:
        """The learned mixing weights by name ("id", then the modalities); they sum to 1."""
        w = self.module_.weights().detach().cpu().double().numpy()
        return dict(zip([ID] + self.used_modalities(), map(float, w)))
