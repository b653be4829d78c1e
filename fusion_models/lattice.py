"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM
2021), following MMRec's implementation (`src/models/lattice.py`, `LATTICE.yaml`) with its
`cf_model: lightgcn` backbone.

Per modality m (raw features F_m, trainable as in MMRec, which loads them with
`nn.Embedding.from_pretrained(..., freeze=False)`):

  original graph   S_m = D^-1/2 kNN_k(cos(F_m)) D^-1/2           built once, frozen
  learned graph    A_m = kNN_k(cos(F_m W_m + b_m))               rebuilt every epoch
  weights          w = softmax(modal_weight)                     (learned, starts equal)
  item graph       G = (1 - lambda) D^-1/2 (sum_m w_m A_m) D^-1/2 + lambda sum_m w_m S_m
  item-graph view  h = G^n_layers e_item                         (n_layers = 1)

kNN_k keeps each row's k largest cosines as weights (the item itself included) and D is the
row-sum diagonal (MMRec's `build_knn_neighbourhood` + `compute_normalized_laplacian`).

User-item backbone: LightGCN over MMRec LATTICE's adjacency D^-1 (A + I) (random-walk
normalised, with self loops), `n_ui_layers` = 2 layers (MMRec: len(weight_size)), mean of the
layer embeddings; the item representation is i_ui + normalize(h). Score = <u, i>.

Loss: BPR (-mean log sigmoid) + reg_weight * (||u||^2 + ||i+||^2 + ||i-||^2) / 2 / batch_size
on the batch's final embeddings, divided by the configured batch size as MMRec does.

Schedule, as in MMRec: the learned graph is built with gradients on the first batch of an
epoch (that batch trains W_m, b_m, modal_weight and the features through the graph); the
other batches of the epoch reuse it detached. Scoring rebuilds it from the current parameters
(MMRec's `full_sort_predict` calls `forward(build_item_graph=True)`). The learning rate decays
as lr * lr_decay ** (epoch / lr_decay_epochs), MMRec's LATTICE `learning_rate_scheduler:
[0.96, 50]` (a LambdaLR stepped once per epoch).

Defaults = a default MMRec run (overall.yaml, then the first value of each list in
LATTICE.yaml): embedding_size 64, feat_embed_dim 64, knn_k 10, lambda_coeff 0.9, n_layers 1,
n_ui_layers 2, reg_weight 0.0, learning_rate 1e-4, batch 2048, Adam without weight decay.
`search_space` is MMRec's grid: reg_weight in [0, 1e-5, 1e-4, 1e-3], learning_rate in
[1e-4, 5e-4, 1e-3, 5e-3].

More than two modalities: every selected modality gets its own graphs, projection and mixing
weight (MMRec's two, image and text, are the case M = 2; the mixing is symmetric in the
modalities, so their order does not matter). Items whose feature is missing
(`data.feature_masks`) or all-zero take no part in that modality's kNN graphs (no
neighbours, nobody's neighbour), in the original and in the learned graphs.

Implementation: every graph is sparse (k edges per item and modality); the kNN search scores
all pairs in row chunks without storing the n x n matrix, and the gradient of the first batch
flows through the selected edge values only, exactly as through MMRec's dense topk + scatter
(MMRec builds dense n x n matrices and normalises them with a dense n^3 product).

Epoch cap: 20 by default, for time: the all-pairs kNN search over the items runs twice per
epoch (the first batch's learned graph and the scoring-time rebuild, as in MMRec). At MMRec's
lr 1e-4 LATTICE first climbs to a plateau and only then keeps improving for hundreds of epochs,
so the cap loses nothing the plateau would not; tuning (lr up to 5e-3) or `--protocol mmrec`
(1000 epochs, patience 20) is what trains it fully, and under patience 20 the early stop can
still fire inside the plateau. Epoch times and the validation curve: docs/models.md.

Checked against MMRec's own code (its LATTICE, run locally on the same lfm2k files with a
driver reproducing its trainer): validation curves, test accuracy and epoch times of both are
in docs/models.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import FitData, register
from baselines.bpr import pair_bpr_loss
from baselines.params import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, UNIT

from .graphs import (
    GraphFusion,
    SparseGraph,
    cosine_knn,
    cosine_values,
    feature_table,
    lightgcn,
    sym_normalize,
    ui_graph,
    union,
    union_values,
    valid_rows,
)

REG_WEIGHTS = [0.0, 1e-5, 1e-4, 1e-3]  # MMRec LATTICE.yaml
LEARNING_RATES = [1e-4, 5e-4, 1e-3, 5e-3]  # MMRec LATTICE.yaml


class LATTICEModule(nn.Module):
    def __init__(
        self,
        n_users: int,
        features: dict,
        valid: list,
        dim: int,
        feat_dim: int,
        knn_k: int,
        train_features: bool,
        device,
    ):
        super().__init__()
        self.n_users, self.knn_k = n_users, knn_k
        n_items = next(iter(features.values())).shape[0]
        self.n_items = n_items
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.feats = nn.ParameterList([feature_table(x, train_features, device) for x in features.values()])
        self.valid = [valid_rows(f, v) for f, v in zip(self.feats, valid)]
        # the original (feature) graphs, normalised per modality, frozen
        self.original = []
        for f, ok in zip(self.feats, self.valid):
            rows, cols = cosine_knn(f, knn_k, ok)
            with torch.no_grad():
                vals = sym_normalize(rows, cols, cosine_values(f, rows, cols), n_items)
            self.original.append((rows, cols, vals))
        self.orig_rows, self.orig_cols, self.orig_pos = union([(r, c) for r, c, _ in self.original], n_items)
        self.trs = nn.ModuleList([nn.Linear(x.shape[1], feat_dim) for x in features.values()])
        self.modal_weight = nn.Parameter(torch.full((len(features),), 0.5))

    def item_graph(self, lambda_coeff: float) -> tuple[SparseGraph, torch.Tensor]:
        """The mixed item-item graph from the current parameters: pattern and (differentiable)
        values."""
        n = self.n_items
        w = torch.softmax(self.modal_weight, dim=0)
        learned, values = [], []
        for m, (f, trs) in enumerate(zip(self.feats, self.trs)):
            z = trs(f)
            rows, cols = cosine_knn(z, self.knn_k, self.valid[m])
            learned.append((rows, cols))
            values.append(w[m] * cosine_values(z, rows, cols))
        l_rows, l_cols, l_pos = union(learned, n)
        l_vals = sym_normalize(l_rows, l_cols, union_values(values, l_pos, len(l_rows)), n)
        o_vals = union_values(
            [w[m] * v for m, (_, _, v) in enumerate(self.original)], self.orig_pos, len(self.orig_rows)
        )
        rows, cols, (pl, po) = union([(l_rows, l_cols), (self.orig_rows, self.orig_cols)], n)
        vals = union_values([(1 - lambda_coeff) * l_vals, lambda_coeff * o_vals], [pl, po], len(rows))
        return SparseGraph(rows, cols, (n, n)), vals

    def embeddings(
        self, ui: SparseGraph, item_graph: SparseGraph, item_values, n_layers: int, n_ui_layers: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item.weight
        for _ in range(n_layers):
            h = item_graph.mm(h, item_values)
        ego = torch.cat([self.user.weight, self.item.weight], dim=0)
        final = lightgcn(ui, ego, n_ui_layers)
        u, i = final[: self.n_users], final[self.n_users :]
        return u, i + F.normalize(h, p=2, dim=1)

    def to(self, *args, **kwargs):  # the graph tensors are plain attributes: move them too
        out = super().to(*args, **kwargs)
        dev = self.user.weight.device
        self.valid = [v.to(dev) for v in self.valid]
        self.original = [tuple(t.to(dev) for t in g) for g in self.original]
        self.orig_rows, self.orig_cols = self.orig_rows.to(dev), self.orig_cols.to(dev)
        self.orig_pos = [p.to(dev) for p in self.orig_pos]
        return out


@register
class LATTICE(GraphFusion):
    """LATTICE: item-item graphs learned from multimodal features, over a LightGCN backbone.

    Per modality, a frozen kNN graph of the raw features' cosines and a kNN graph of learned
    projections (rebuilt every epoch, trained through its first batch) are mixed by learned
    softmax weights; item embeddings propagated over the mixed graph are added, L2-normalised,
    to the LightGCN embeddings of MMRec LATTICE's user-item graph D^-1 (A + I); score(u, i) =
    <u, i>; BPR plus an L2 term on the batch's final embeddings; the learning rate decays per
    epoch (see the module docstring). Follows MMRec's implementation and defaults with its
    `cf_model: lightgcn` backbone; any number of modalities.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the user and item embeddings. Accepted: int >= 1.
    feat_embed_dim : int, default 64
        Width of the learned projections F_m W_m + b_m the learned graphs are built from.
        Accepted: int >= 1.
    knn_k : int, default 10
        Neighbours per item in every kNN graph (the item itself included). Accepted: int >= 1.
    lambda_coeff : float, default 0.9
        Share of the original (feature) graph in the item graph; 1 - lambda_coeff is the
        learned graph's. Accepted: real in [0, 1].
    n_layers : int, default 1
        Propagation steps over the item-item graph (0: none). Accepted: int >= 0.
    n_ui_layers : int, default 2
        LightGCN layers over the user-item graph (0: none). Accepted: int >= 0.
    reg_weight : float, default 0.0
        Weight of (||u||^2 + ||i+||^2 + ||i-||^2) / 2 / batch_size on the batch's final
        embeddings. Accepted: real >= 0. Tuned by `search_space` over MMRec's grid.
    learning_rate : float, default 1e-4
        Adam's initial learning rate. Accepted: real > 0. Tuned by `search_space` over MMRec's
        grid.
    lr_decay : float, default 0.96
        Epoch e trains at learning_rate * lr_decay ** (e / lr_decay_epochs) (MMRec's
        `learning_rate_scheduler`). Accepted: real > 0.
    lr_decay_epochs : int, default 50
        The decay's period in epochs. Accepted: int >= 1.
    batch_size : int, default 2048
        Training triples per step. Accepted: int >= 1.
    epochs : int, default 20
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
        `user` and `item` embeddings, the feature tables `feats`, the projections `trs`,
        the mixing logits `modal_weight` and the frozen original graphs.

    References
    ----------
    Zhang, Zhu, Liu, Wu, Wang, Wang. Mining Latent Structures for Multimedia Recommendation.
    ACM MM 2021.

    MMRec's LATTICE: github.com/enoche/MMRec, `src/models/lattice.py` and
    `src/configs/model/LATTICE.yaml`.
    """

    name = "lattice"
    # n_layers, n_ui_layers 0: no propagation over that graph; lambda_coeff mixes the two item graphs
    _parameter_constraints = {
        "feat_embed_dim": [POSITIVE_INT],
        "knn_k": [POSITIVE_INT],
        "lambda_coeff": [UNIT],
        "n_layers": [NON_NEGATIVE_INT],
        "n_ui_layers": [NON_NEGATIVE_INT],
        "lr_decay": [POSITIVE],
        "lr_decay_epochs": [POSITIVE_INT],
    }

    def __init__(
        self,
        embedding_size: int = 64,
        feat_embed_dim: int = 64,
        knn_k: int = 10,
        lambda_coeff: float = 0.9,
        n_layers: int = 1,
        n_ui_layers: int = 2,
        reg_weight: float = 0.0,
        learning_rate: float = 1e-4,
        lr_decay: float = 0.96,
        lr_decay_epochs: int = 50,
        batch_size: int = 2048,
        epochs: int = 20,
        train_features: bool = True,
        normalize_features: bool = False,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.feat_embed_dim = feat_embed_dim
        self.knn_k = knn_k
        self.lambda_coeff = lambda_coeff
        self.n_layers = n_layers
        self.n_ui_layers = n_ui_layers
        self.reg_weight = reg_weight
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.lr_decay_epochs = lr_decay_epochs
        self.batch_size = batch_size
        self.epochs = epochs
        self.train_features = train_features
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {
            "reg_weight": trial.suggest_categorical("reg_weight", REG_WEIGHTS),
            "learning_rate": trial.suggest_categorical("learning_rate", LEARNING_RATES),
        }

    def build(self, data: FitData) -> nn.Module:
        self._ui = ui_graph(data.train, self.device_, norm="rw_self_loop")
        self._graph = None  # (SparseGraph, values) of the current epoch
        self._epoch = 0
        return LATTICEModule(
            data.n_users,
            self._features,
            self.presence(data),
            int(self.embedding_size),
            int(self.feat_embed_dim),
            int(self.knn_k),
            bool(self.train_features),
            self.device_,
        )

    def train_epoch(self) -> float:
        # MMRec: pre_epoch_processing sets build_item_graph, and the LambdaLR scheduler gives
        # epoch e the rate lr * decay ** (e / step)
        self._graph = None
        for group in self._optimizer.param_groups:
            group["lr"] = self.learning_rate * self.lr_decay ** (self._epoch / self.lr_decay_epochs)
        self._epoch += 1
        return super().train_epoch()

    def batch_loss(self, users, pos, neg):
        m = self.module_
        if self._graph is None:  # first batch of the epoch: learn through the graph
            graph, values = m.item_graph(float(self.lambda_coeff))
            graph.set_values(values)  # a detached copy for the epoch's other batches
            self._graph = graph
        else:  # the other batches: the same graph, detached
            graph, values = self._graph, None
        u_all, i_all = m.embeddings(self._ui, graph, values, int(self.n_layers), int(self.n_ui_layers))
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        loss = pair_bpr_loss(u, p, n)
        if self.reg_weight:
            reg = 0.5 * ((u**2).sum() + (p**2).sum() + (n**2).sum()) / self.batch_size
            loss = loss + self.reg_weight * reg
        return loss

    def final_embeddings(self):
        m = self.module_
        graph, values = m.item_graph(float(self.lambda_coeff))
        return m.embeddings(self._ui, graph, values, int(self.n_layers), int(self.n_ui_layers))

    def modality_weights(self) -> dict[str, float]:
        """softmax(modal_weight) by modality name: each modality's share of the item graph."""
        w = torch.softmax(self.module_.modal_weight.detach(), 0).cpu().double().numpy()
        return dict(zip(self.used_modalities(), map(float, w)))
