"""LightGCN (He et al., SIGIR 2020), faithful to RecBole 1.2.1's `LightGCN`.

The symmetric-normalised bipartite adjacency D^-1/2 A D^-1/2 (A = [[0, R], [R^T, 0]], degree
+ 1e-7 as in RecBole) is built once as a torch sparse tensor. Ego embeddings (Xavier-uniform)
are propagated `n_layers` times and the final embedding is the mean of the n_layers + 1 layer
embeddings. The loss of a batch of (user, positive, negative) triples is RecBole's

    BPRLoss: -mean log(1e-10 + sigmoid(s_pos - s_neg))
    + reg_weight * EmbLoss(ego_u, ego_pos, ego_neg)

where EmbLoss (require_pow=False, RecBole's default) is the sum of the Frobenius norms of the
three batch ego-embedding matrices divided by the batch size (require_pow=True: the sum of the
squared norms / batch size / 2). Defaults: embedding 64, n_layers 2 (RecBole's), Adam lr 1e-3,
batch 2048, one uniform negative per positive (RecBole's); reg_weight 1e-4 is the value the
LightGCN paper reports as best in most cases (RecBole's yaml ships 1e-5). Its own `epochs`
(50) bounds a plain `fit`; under the benchmark's protocols patience on validation stops it
(measurements in docs/models.md).

The adjacency is stored in CSR and, being symmetric, is its own transpose in the backward
pass. The propagated embeddings are cached for scoring (`CachedScoring`) and invalidated by
every training step and by `set_state`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .base import FitData, register
from .bpr import recbole_bpr_loss
from .params import NON_NEGATIVE, NON_NEGATIVE_INT
from .torch_base import CachedScoring, TorchRecommender


def normalized_adjacency(train: sp.csr_matrix) -> sp.coo_matrix:
    """D^-1/2 A D^-1/2 of the binary bipartite graph, users first then items."""
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32)
    r.sum_duplicates()
    r.data = np.ones_like(r.data)
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    a = sp.csr_matrix(a, shape=(n_users + n_items, n_users + n_items))
    deg = np.asarray(a.sum(axis=1)).ravel() + 1e-7
    d = sp.diags(np.power(deg, -0.5).astype(np.float32))
    return (d @ a @ d).tocoo()


class _SymmetricSpmm(torch.autograd.Function):
    """y = A @ x for a constant symmetric sparse A: the gradient A^T g is A @ g.

    torch's generic sparse backward transposes (and re-sorts) A on every call, which costs
    more than the product itself; A's symmetry makes that unnecessary.
    """

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.adj @ grad


def propagate(mm: Callable[[torch.Tensor], torch.Tensor], ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's propagation: the mean of ego, A ego, ..., A^n_layers ego, with `mm` the
    product by the normalised adjacency A (every graph model's layer combination, one place)."""
    total, e = ego, ego
    for _ in range(int(n_layers)):
        e = mm(e)
        total = total + e
    return total / (int(n_layers) + 1)


class LightGCNModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int, adj: torch.Tensor):
        super().__init__()
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.register_buffer("adj", adj, persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user.weight, self.item.weight], dim=0)
        final = propagate(lambda e: _SymmetricSpmm.apply(self.adj, e), ego, self.n_layers)
        return final[: self.n_users], final[self.n_users :]


@register
class LightGCN(CachedScoring, TorchRecommender):
    """LightGCN: embeddings smoothed over the user-item graph, trained with BPR.

    Ego embeddings are propagated `n_layers` times over the symmetric-normalised bipartite
    adjacency D^-1/2 A D^-1/2 (no weights, no non-linearity) and the final embedding is the
    mean of the n_layers + 1 layers; score(u, i) = <u, i>. The loss is RecBole's BPRLoss plus
    `reg_weight` times its EmbLoss on the batch's ego embeddings (see the module docstring).
    Faithful to RecBole 1.2.1's `LightGCN`.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the ego embeddings. Accepted: int >= 1.
    n_layers : int, default 2
        Propagation steps (0: plain matrix factorisation). Accepted: int >= 0. Tuned by
        `search_space`.
    reg_weight : float, default 1e-4
        Weight of the embedding regulariser (the LightGCN paper's best value in most cases;
        RecBole's yaml ships 1e-5). Accepted: real >= 0. Tuned by `search_space`.
    require_pow : bool, default False
        RecBole's EmbLoss variant: False sums the Frobenius norms / batch size, True the squared
        norms / batch size / 2.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0. Tuned by `search_space`.
    batch_size : int, default 2048
        Training triples per step. Accepted: int >= 1.
    epochs : int, default 50
        Epoch cap (RecBole: 300; the benchmark's protocol sets it and early-stops on
        validation). Accepted: int >= 1.

    Attributes
    ----------
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        The ego embeddings `user` and `item` and the normalised adjacency (a non-persistent
        buffer: input data, not learned state).

    References
    ----------
    He, Deng, Wang, Li, Zhang, Wang. LightGCN: Simplifying and Powering Graph Convolution
    Network for Recommendation. SIGIR 2020.

    RecBole 1.2.1's LightGCN: github.com/RUCAIBox/RecBole,
    `recbole/model/general_recommender/lightgcn.py`.
    """

    name = "lightgcn"
    family = "baseline/cf"
    _parameter_constraints = {"n_layers": [NON_NEGATIVE_INT], "reg_weight": [NON_NEGATIVE], "require_pow": [bool]}

    def __init__(
        self,
        embedding_size: int = 64,
        n_layers: int = 2,
        reg_weight: float = 1e-4,
        require_pow: bool = False,
        learning_rate: float = 1e-3,
        batch_size: int = 2048,
        epochs: int = 50,
    ):
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.require_pow = require_pow
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs

    @classmethod
    def search_space(cls, trial):
        return {
            "n_layers": trial.suggest_int("n_layers", 1, 4),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "reg_weight": trial.suggest_float("reg_weight", 1e-6, 1e-2, log=True),
        }

    def build(self, data: FitData) -> nn.Module:
        coo = normalized_adjacency(data.train)
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        adj = torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), coo.shape, check_invariants=False)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used read-only
            warnings.simplefilter("ignore", UserWarning)
            adj = adj.coalesce().to_sparse_csr()  # CSR: the fastest sparse @ dense on CPU and CUDA
        return LightGCNModule(data.n_users, data.n_items, int(self.embedding_size), int(self.n_layers), adj)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings: the mean over layers 0..n_layers."""
        return self.module_()

    def batch_loss(self, users, pos, neg):
        self._cache = None  # parameters are about to change
        m = self.module_
        user_all, item_all = m()
        u, p, n = user_all[users], item_all[pos], item_all[neg]
        pos_scores, neg_scores = (u * p).sum(-1), (u * n).sum(-1)
        mf_loss = recbole_bpr_loss(pos_scores, neg_scores)
        ego = (m.user(users), m.item(pos), m.item(neg))
        if self.require_pow:
            reg = sum(e.norm(p=2).pow(2) for e in ego) / len(users) / 2
        else:
            reg = sum(e.norm(p=2) for e in ego) / len(users)
        return mf_loss + self.reg_weight * reg
