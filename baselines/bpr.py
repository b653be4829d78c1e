"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained with the pairwise BPR loss.

Defaults follow RecBole's BPR (embedding 64, Adam lr 1e-3, batch 2048, Xavier-normal
initialisation, one uniform negative per positive, no weight decay) so numbers are comparable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FitData, register
from .torch_base import TorchRecommender, embedding_space


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(s_pos - s_neg), averaged; logsigmoid is the numerically stable form."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def recbole_bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """RecBole's BPRLoss, -mean log(1e-10 + sigmoid(s_pos - s_neg)): kept where a model must
    match RecBole's to the bit (it differs from `bpr_loss` where sigmoid underflows)."""
    return -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores)).mean()


def pair_bpr_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """`bpr_loss` of dot-product scores: user rows `u` against positive and negative item rows."""
    return bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))


@register
class BPRMF(TorchRecommender):
    """BPR-MF: matrix factorisation trained with the pairwise BPR loss.

    score(u, i) = <p_u, q_i> with Xavier-normal user and item embeddings; each epoch visits
    every training pair once, with one uniform negative the user has not interacted with, and
    minimises -log sigmoid(s_pos - s_neg) with Adam. Defaults follow RecBole's BPR so numbers
    are comparable.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the user and item embeddings. Accepted: int >= 1. Tuned by `search_space`.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0. Tuned by `search_space`.
    weight_decay : float, default 0.0
        Adam's L2 weight decay. Accepted: real >= 0. Tuned by `search_space`.
    batch_size : int, default 2048
        Training triples per step. Accepted: int >= 1.
    epochs : int, default 300
        Epoch cap (the benchmark's protocol sets it and early-stops on validation).
        Accepted: int >= 1.

    Attributes
    ----------
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        The embeddings: `user` (n_users, embedding_size) and `item` (n_items, embedding_size).

    References
    ----------
    Rendle, Freudenthaler, Gantner, Schmidt-Thieme. BPR: Bayesian Personalized Ranking from
    Implicit Feedback. UAI 2009.

    RecBole's BPR: github.com/RUCAIBox/RecBole, `recbole/model/general_recommender/bpr.py`.
    """

    name = "bpr"
    family = "baseline/cf"

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 300,
    ):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs

    @classmethod
    def search_space(cls, trial):
        return embedding_space(trial)

    def build(self, data: FitData) -> nn.Module:
        return MF(data.n_users, data.n_items, int(self.embedding_size))

    def batch_loss(self, users, pos, neg):
        u = self.module_.user(users)
        return bpr_loss((u * self.module_.item(pos)).sum(-1), (u * self.module_.item(neg)).sum(-1))

    def score_tensor(self, users):
        return self.module_.user(users) @ self.module_.item.weight.T
