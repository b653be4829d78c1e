"""BM3 (Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation",
WWW 2023), following MMRec's implementation (`src/models/bm3.py`, `BM3.yaml`).

Backbone: LightGCN over the symmetric D^-1/2 A D^-1/2 user-item graph (`n_layers`, mean of the
layer embeddings), the item's id embedding added once more: u = mean_l(...)_u,
i = mean_l(...)_i + e_i. Modality m: z_m = F_m W_m + b_m (Xavier-normal W_m, embedding_size
wide; features trainable as in MMRec's `nn.Embedding.from_pretrained(..., freeze=False)`).
A shared predictor g (Linear, Xavier-normal weight) maps the online views.

Self-supervised bootstrap loss on a batch of observed (user, item) pairs (no negatives:
MMRec's BM3 sets `use_neg_sampling: False`), with targets made by dropout (rate `dropout`) of
the detached representations (u~, i~, z~_m):

  L = [1 - cos(g(u), i~)] + [1 - cos(g(i), u~)]                         (batch means)
    + cl_weight * sum_m ([1 - cos(g(z_m)_i, i~)] + [1 - cos(g(z_m)_i, z~_m,i)])
    + reg_weight * (||U|| + ||I||) / n_items                             (all users, items)

the last term being MMRec's EmbLoss on the full final embedding tables (Frobenius norms, not
squared, divided by the number of rows of the last one). Score = <g(u), g(i)>.

Defaults = a default MMRec run (overall.yaml, first values of BM3.yaml's lists):
embedding_size 64, n_layers 1, reg_weight 0.1, dropout 0.3, cl_weight 2.0, Adam lr 1e-3,
batch 2048. `search_space` is MMRec's grid: n_layers in [1, 2], reg_weight in [0.1, 0.01],
dropout in [0.3, 0.5].

More than two modalities: every selected modality adds its two alignment terms (MMRec's text
and image terms are the case M = 2; the loss is symmetric in the modalities).
Missing features (`data.feature_masks`): a modality's two alignment terms average over the
batch items whose feature is present (none present: no term); BM3 builds no item-item graph.

Epoch cap: 30 by default, for time (most of an epoch is the Adam step and gradient of the
trainable feature tables, as in MMRec); BM3 is far from converged at the cap, so tuning or
`--protocol mmrec` (1000 epochs, patience 20) is what trains it fully. Epoch times and the
validation curve: docs/models.md.

Checked against MMRec's own code (its BM3, run locally on the same lfm2k files with a driver
reproducing its trainer): test accuracy of both under `--protocol mmrec` is in docs/models.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import FitData, register
from baselines.params import DROPOUT, NON_NEGATIVE, NON_NEGATIVE_INT

from .graphs import GraphFusion, SparseGraph, feature_table, lightgcn, ui_graph

N_LAYERS = [1, 2]  # MMRec BM3.yaml
REG_WEIGHTS = [0.1, 0.01]
DROPOUTS = [0.3, 0.5]


class BM3Module(nn.Module):
    def __init__(self, n_users: int, features: dict, dim: int, train_features: bool, device):
        super().__init__()
        self.n_users = n_users
        self.n_items = next(iter(features.values())).shape[0]
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.predictor = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.predictor.weight)
        self.feats = nn.ParameterList([feature_table(x, train_features, device) for x in features.values()])
        self.trs = nn.ModuleList()
        for x in features.values():
            lin = nn.Linear(x.shape[1], dim)
            nn.init.xavier_normal_(lin.weight)
            self.trs.append(lin)

    def forward(self, ui: SparseGraph, n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user.weight, self.item.weight], dim=0)
        final = lightgcn(ui, ego, n_layers)
        return final[: self.n_users], final[self.n_users :] + self.item.weight


def _align(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


@register
class BM3(GraphFusion):
    """BM3: self-supervised bootstrapping of LightGCN and multimodal item representations.

    LightGCN embeddings of the user-item graph (the item's id embedding added once more) and
    per-modality projections are trained without negatives: a shared predictor's online views
    are pulled (cosine) towards dropout views of the detached representations, across users
    and items and between each modality and its item, plus MMRec's EmbLoss on the full
    tables; score(u, i) = <g(u), g(i)> (see the module docstring). Follows MMRec's
    implementation and defaults; any number of modalities.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the embeddings, the projections and the predictor. Accepted: int >= 1.
    n_layers : int, default 1
        LightGCN layers over the user-item graph (0: none). Accepted: int >= 0. Tuned by
        `search_space` over MMRec's grid.
    reg_weight : float, default 0.1
        Weight of EmbLoss (||U|| + ||I||) / n_items on the final tables. Accepted: real >= 0
        (declared by GraphFusion). Tuned by `search_space` over MMRec's grid.
    dropout : float, default 0.3
        Dropout rate that makes the target views. Accepted: real in [0, 1). Tuned by
        `search_space` over MMRec's grid.
    cl_weight : float, default 2.0
        Weight of the modality alignment terms. Accepted: real >= 0.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0.
    batch_size : int, default 2048
        Observed (user, item) pairs per step. Accepted: int >= 1.
    epochs : int, default 30
        Epoch cap, for time (see docs/models.md; the benchmark's protocol sets it and
        early-stops on validation). Accepted: int >= 1.
    train_features : bool, default True
        The feature matrices are trainable parameters, as in MMRec
        (`nn.Embedding.from_pretrained(..., freeze=False)`), updated wherever the loss reaches
        them; False keeps them fixed (then they are input data, not counted as parameters).
    normalize_features : bool, default False
        L2-normalise each modality per item first (default: raw features, as MMRec reads them).
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
        `user` and `item` embeddings, the `predictor`, the feature tables `feats` and the
        projections `trs`.

    References
    ----------
    Zhou et al. Bootstrap Latent Representations for Multi-modal Recommendation. WWW 2023.

    MMRec's BM3: github.com/enoche/MMRec, `src/models/bm3.py` and
    `src/configs/model/BM3.yaml`.
    """

    name = "bm3"
    _parameter_constraints = {"n_layers": [NON_NEGATIVE_INT], "dropout": [DROPOUT], "cl_weight": [NON_NEGATIVE]}

    def __init__(
        self,
        embedding_size: int = 64,
        n_layers: int = 1,
        reg_weight: float = 0.1,
        dropout: float = 0.3,
        cl_weight: float = 2.0,
        learning_rate: float = 1e-3,
        batch_size: int = 2048,
        epochs: int = 30,
        train_features: bool = True,
        normalize_features: bool = False,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.dropout = dropout
        self.cl_weight = cl_weight
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.train_features = train_features
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {
            "n_layers": trial.suggest_categorical("n_layers", N_LAYERS),
            "reg_weight": trial.suggest_categorical("reg_weight", REG_WEIGHTS),
            "dropout": trial.suggest_categorical("dropout", DROPOUTS),
        }

    def build(self, data: FitData) -> nn.Module:
        self._ui = ui_graph(data.train, self.device_, norm="sym")
        self._present = [None if p is None or bool(p.all()) else p for p in self.presence(data)]
        return BM3Module(
            data.n_users, self._features, int(self.embedding_size), bool(self.train_features), self.device_
        )

    def epoch_batches(self):
        """Observed (user, item) pairs in random order, no negatives (MMRec's BM3 trains with
        `use_neg_sampling: False`)."""
        s = self._sampler
        order = s.rng.permutation(len(s.users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield s.users[idx], s.items[idx]

    def batch_loss(self, users, items):
        m = self.module_
        p = float(self.dropout)
        u_ori, i_ori = m(self._ui, int(self.n_layers))
        # Only the batch's rows enter the loss. MMRec drops out the full tables and then picks
        # rows, so a row picked twice shares one mask: dropping out the unique rows once is
        # the same computation restricted to the rows used (and the modality projections need
        # only those rows).
        uu, u_inv = torch.unique(users, return_inverse=True)
        ii, i_inv = torch.unique(items, return_inverse=True)
        u_rows, i_rows = u_ori[uu], i_ori[ii]
        z_rows = [trs(f[ii]) for f, trs in zip(m.feats, m.trs)]
        with torch.no_grad():  # targets: dropout views of the detached representations
            u_t = F.dropout(u_rows, p, training=True)[u_inv]
            i_t = F.dropout(i_rows, p, training=True)[i_inv]
            z_t = [F.dropout(z, p, training=True)[i_inv] for z in z_rows]
        u_online = m.predictor(u_rows)[u_inv]
        i_online = m.predictor(i_rows)[i_inv]
        loss = _align(u_online, i_t) + _align(i_online, u_t)
        cl = 0.0
        for k, (z, zt) in enumerate(zip(z_rows, z_t)):
            z_b = m.predictor(z)[i_inv]
            present = self._present[k]
            if present is None:
                cl = cl + _align(z_b, i_t) + _align(z_b, zt)
            else:  # only the batch items whose feature is present align with it
                keep = present[items]
                if bool(keep.any()):
                    cl = cl + _align(z_b[keep], i_t[keep]) + _align(z_b[keep], zt[keep])
        if self.reg_weight:  # MMRec's EmbLoss on the full final tables
            reg = (torch.linalg.norm(u_ori) + torch.linalg.norm(i_ori)) / i_ori.shape[0]
            loss = loss + self.reg_weight * reg
        return loss + self.cl_weight * cl

    def final_embeddings(self):
        m = self.module_
        u, i = m(self._ui, int(self.n_layers))
        return m.predictor(u), m.predictor(i)
