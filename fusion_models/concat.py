"""Early fusion by concatenation (`fusion-concat`).

item representation  q_i = MLP([e_i ; h_1(f_i^1) ; ... ; h_M(f_i^M)])  in R^d
user representation  p_u = e_u                                          in R^d
score(u, i)          = <p_u, q_i>,   trained with BPR (one uniform negative per pair)

`h_m` is a linear projection of modality m to d (one head per modality, `ModalityEncoders`);
each modality is L2-normalised per item first (`normalize_features`). The MLP is
Linear((M+1)d, d) -> LeakyReLU -> dropout -> Linear(d, d), so the model can learn
interactions between the id embedding and the content, which a sum (feature-mf) cannot.

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay, no dropout, 100 epochs
(the benchmark early-stops on validation).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.base import FitData, register
from baselines.params import DROPOUT

from .layers import ItemTowerFusion, ModalityEncoders, fusion_space, id_embeddings, mlp


class ConcatModule(nn.Module):
    def __init__(self, n_users: int, encoders: ModalityEncoders, dim: int, dropout: float):
        super().__init__()
        self.encoders = encoders
        self.n_items = encoders.n_items
        self.user, self.item = id_embeddings(n_users, self.n_items, dim)
        self.mlp = mlp([(len(encoders) + 1) * dim, dim, dim], dropout=dropout)

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item.rows(idx)
        parts = [ids] + [self.encoders.encode(m, idx) for m in range(len(self.encoders))]
        return self.mlp(torch.cat(parts, dim=-1))


@register
class ConcatFusion(ItemTowerFusion):
    """Early fusion: the item vector is an MLP over the id embedding and every modality's projection.

    q_i = MLP([e_i ; h_1(f_i^1) ; ... ; h_M(f_i^M)]) with one linear head h_m per modality and
    the MLP Linear((M+1)d, d) -> LeakyReLU -> dropout -> Linear(d, d), so id and content can
    interact, which a sum (feature-mf) cannot; score(u, i) = <e_u, q_i>. Item id embeddings of
    items without training interactions are zeroed and kept at zero, so a cold-start item is
    scored by its content. A fusion strategy of this benchmark, not a published model.

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
    epochs : int, default 100
        Epoch cap (the benchmark's protocol sets it and early-stops on validation).
        Accepted: int >= 1.
    dropout : float, default 0.0
        Dropout between the MLP's two layers. Accepted: real in [0, 1). Tuned by
        `search_space`.
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
        `user` and `item` id embeddings, the projection heads `encoders` (the features are
        non-persistent buffers: input data, not learned state) and the `mlp`.

    References
    ----------
    Baltrušaitis, Ahuja, Morency. Multimodal Machine Learning: A Survey and Taxonomy. IEEE
    TPAMI 41(2), 2019 (early fusion).

    Volkovs, Yu, Poutanen. DropoutNet: Addressing Cold Start in Recommender Systems. NeurIPS
    2017 (`id_dropout`).

    Yi et al. Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations.
    RecSys 2019 (`loss="sampled"`).
    """

    name = "fusion-concat"
    zero_cold_ids = True
    _parameter_constraints = {"dropout": [DROPOUT]}

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 100,
        dropout: float = 0.0,
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
        self.dropout = dropout
        self.loss = loss
        self.id_dropout = id_dropout
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {**fusion_space(trial), "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def build(self, data: FitData) -> nn.Module:
        dim = int(self.embedding_size)
        return ConcatModule(data.n_users, self.encoders(dim), dim, float(self.dropout))
