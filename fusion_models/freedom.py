"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023), following MMRec's implementation
(`src/models/freedom.py`, `FREEDOM.yaml`).

Item-item graph, built ONCE from the raw features and frozen (no learned structure):

  S_m = D^-1/2 B_m D^-1/2        B_m the binary kNN_k graph of cos(F_m) (the item itself
                                 included), D its row sums + 1e-7, so every edge is 1/k
  S   = sum_m w_m S_m            MMRec (image v, text t): w_v = mm_image_weight, w_t = 1 - it
  h   = S^n_mm_layers e_item     (n_mm_layers = 1)

User-item graph: LightGCN (`n_ui_layers` = 2, mean of the layer embeddings) over the
symmetric D^-1/2 A D^-1/2. Training uses a degree-sensitively pruned copy redrawn before
every epoch: int(nnz * (1 - dropout)) edges sampled without replacement with probability
proportional to 1 / sqrt(deg_u deg_i), re-normalised symmetrically on the kept graph;
scoring uses the full graph. Item representation: i_ui + h; score = <u, i>.

Loss: BPR(u, i+, i-) + reg_weight * sum_m BPR(u, F_m W_m + b_m at i+, at i-): the
modality-specific BPR terms (the projections are nn.Linear with PyTorch's default init,
`feat_embed_dim` = embedding_size); features are trainable parameters as in MMRec
(`nn.Embedding.from_pretrained(..., freeze=False)`), so those terms also move the features.

Defaults = a default MMRec run (overall.yaml, first values of FREEDOM.yaml's lists, whose
`hyper_parameters` order is dropout then reg_weight): embedding_size 64, feat_embed_dim 64,
knn_k 10, mm_image_weight 0.1, dropout 0.8, n_mm_layers 1, n_ui_layers 2, reg_weight 0.0 (so a
default run trains the modality projections not at all: the features act through the frozen
graph only), Adam lr 1e-3, batch 2048. `search_space` is MMRec's grid: dropout in [0.8, 0.9],
reg_weight in [0, 1e-5, 1e-4, 1e-3]. (FREEDOM.yaml's lambda_coeff is unused by the model.)

Modality roles (mm_image_weight): MMRec has exactly two, image (v) and text (t). Here the
text role is the first selected modality named "text" or "text/..."; the v role is every
other selected modality. With both roles present the text graph gets 1 - mm_image_weight and
the v-role modalities share mm_image_weight equally, so the pair (text, X) reproduces MMRec
with X as its image (on lfm2k with modalities=text,audio/vggish: v = VGGish, t = text). With
one role only (e.g. a single modality, or no text), the modalities are weighted equally.

Missing features (`data.feature_masks`) and all-zero rows take no part in the kNN graph of
that modality (no neighbours, nobody's neighbour), and a missing feature projects to zero in
the modality BPR terms (it scores 0 rather than as content).

Epoch cap: 60 by default, for time (every batch makes three sparse products over the full
graphs, as in MMRec). FREEDOM is not converged at the cap; tuning or `--protocol mmrec` (1000
epochs, patience 20) trains it to convergence. Epoch times and the validation curve:
docs/models.md.

The edge sampling uses its own CPU generator seeded from the run's seed, so a seed gives the
same pruned graphs on every device.

Checked against MMRec's own code (its FREEDOM, run locally on the same lfm2k files with a
driver reproducing its trainer and dataloader): validation curves, test accuracy under
`--protocol mmrec` and epoch times of both are in docs/models.md.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from baselines.base import FitData, register
from baselines.bpr import pair_bpr_loss
from baselines.params import DROPOUT, NON_NEGATIVE_INT, POSITIVE_INT, UNIT
from baselines.torch_base import item_rows
from datasets.errors import FusebenchError

from .graphs import (
    GraphFusion,
    SparseGraph,
    cosine_knn,
    degree_sensitive_sample,
    edge_weights,
    feature_table,
    lightgcn,
    sym_normalize,
    ui_graph,
    union,
    union_values,
    valid_rows,
)

REG_WEIGHTS = [0.0, 1e-5, 1e-4, 1e-3]  # MMRec FREEDOM.yaml
DROPOUTS = [0.8, 0.9]  # MMRec FREEDOM.yaml


def is_text(name: str) -> bool:
    return name == "text" or name.startswith("text/")


def mmrec_weights(names: list[str], mm_image_weight: float) -> list[float]:
    """Per modality: its weight in FREEDOM's item graph (see the module doc)."""
    text = next((i for i, n in enumerate(names) if is_text(n)), None)
    others = [i for i in range(len(names)) if i != text]
    if text is None or not others:
        return [1.0 / len(names)] * len(names)
    w = [mm_image_weight / len(others)] * len(names)
    w[text] = 1.0 - mm_image_weight
    return w


def frozen_item_graph(features: list[torch.Tensor], valid: list, weights: list[float], k: int) -> SparseGraph:
    """sum_m w_m D^-1/2 B_m D^-1/2 over the modalities' binary kNN graphs B_m."""
    n = features[0].shape[0]
    edges, values = [], []
    for f, ok, w in zip(features, valid, weights):
        rows, cols = cosine_knn(f, k, ok)
        ones = torch.ones(len(rows), dtype=torch.float32, device=f.device)
        edges.append((rows, cols))
        values.append(w * sym_normalize(rows, cols, ones, n, eps=1e-7))
    rows, cols, pos = union(edges, n)
    return SparseGraph(rows, cols, (n, n), values=union_values(values, pos, len(rows)))


class FREEDOMModule(nn.Module):
    def __init__(self, n_users: int, features: dict, dim: int, feat_dim: int, train_features: bool, device):
        super().__init__()
        self.n_users = n_users
        self.n_items = next(iter(features.values())).shape[0]
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.feats = nn.ParameterList([feature_table(x, train_features, device) for x in features.values()])
        self.trs = nn.ModuleList([nn.Linear(x.shape[1], feat_dim) for x in features.values()])

    def embeddings(self, ui: SparseGraph, mm: SparseGraph, n_mm_layers: int, n_ui_layers: int):
        h = self.item.weight
        for _ in range(n_mm_layers):
            h = mm.mm(h)
        ego = torch.cat([self.user.weight, self.item.weight], dim=0)
        final = lightgcn(ui, ego, n_ui_layers)
        return final[: self.n_users], final[self.n_users :] + h

    def project(self, m: int, idx: torch.Tensor | None = None) -> torch.Tensor:
        f = self.feats[m]
        return self.trs[m](f if idx is None else f[idx])


@register
class FREEDOM(GraphFusion):
    """FREEDOM: a frozen item-item graph from multimodal features and a denoised user-item graph.

    The item-item graph is built once from the raw features' kNN graphs and frozen; item
    embeddings propagated over it are added to the LightGCN embeddings of the user-item graph,
    which is pruned degree-sensitively before every training epoch (the full graph scores);
    score(u, i) = <u, i>; BPR plus `reg_weight` times modality-specific BPR terms on projected
    features (see the module docstring). Follows MMRec's implementation and defaults; any number
    of modalities, split into MMRec's text and image roles.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the user and item embeddings. Accepted: int >= 1.
    feat_embed_dim : int, default 64
        Width of the modality projections F_m W_m + b_m (must equal `embedding_size` when
        reg_weight > 0: the modality BPR terms score users against them). Accepted: int >= 1.
    knn_k : int, default 10
        Neighbours per item in each modality's kNN graph (the item itself included).
        Accepted: int >= 1.
    mm_image_weight : float, default 0.1
        The image role's share of the item graph; the text modality gets 1 - mm_image_weight
        (one role only: equal weights). Accepted: real in [0, 1].
    dropout : float, default 0.8
        Share of user-item edges pruned before each epoch. Accepted: real in [0, 1). Tuned by
        `search_space` over MMRec's grid.
    n_mm_layers : int, default 1
        Propagation steps over the item-item graph (0: none). Accepted: int >= 0.
    n_ui_layers : int, default 2
        LightGCN layers over the user-item graph (0: none). Accepted: int >= 0.
    reg_weight : float, default 0.0
        Weight of the modality BPR terms (0: the projections are not trained; features act
        through the frozen graph only). Accepted: real >= 0. Tuned by `search_space` over
        MMRec's grid.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0.
    batch_size : int, default 2048
        Training triples per step. Accepted: int >= 1.
    epochs : int, default 60
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
        `user` and `item` embeddings, the feature tables `feats` and the projections `trs`
        (the frozen item graph and the user-item graphs are kept outside the module).

    References
    ----------
    Zhou, Shen. A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
    Recommendation. ACM MM 2023.

    MMRec's FREEDOM: github.com/enoche/MMRec, `src/models/freedom.py` and
    `src/configs/model/FREEDOM.yaml`.
    """

    name = "freedom"
    # dropout: the share of user-item edges pruned each epoch; mm_image_weight the image role's share
    _parameter_constraints = {
        "feat_embed_dim": [POSITIVE_INT],
        "knn_k": [POSITIVE_INT],
        "mm_image_weight": [UNIT],
        "dropout": [DROPOUT],
        "n_mm_layers": [NON_NEGATIVE_INT],
        "n_ui_layers": [NON_NEGATIVE_INT],
    }

    def __init__(
        self,
        embedding_size: int = 64,
        feat_embed_dim: int = 64,
        knn_k: int = 10,
        mm_image_weight: float = 0.1,
        dropout: float = 0.8,
        n_mm_layers: int = 1,
        n_ui_layers: int = 2,
        reg_weight: float = 0.0,
        learning_rate: float = 1e-3,
        batch_size: int = 2048,
        epochs: int = 60,
        train_features: bool = True,
        normalize_features: bool = False,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.feat_embed_dim = feat_embed_dim
        self.knn_k = knn_k
        self.mm_image_weight = mm_image_weight
        self.dropout = dropout
        self.n_mm_layers = n_mm_layers
        self.n_ui_layers = n_ui_layers
        self.reg_weight = reg_weight
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.train_features = train_features
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {
            "dropout": trial.suggest_categorical("dropout", DROPOUTS),
            "reg_weight": trial.suggest_categorical("reg_weight", REG_WEIGHTS),
        }

    def validate(self) -> None:
        super().validate()
        if self.reg_weight and self.feat_embed_dim != self.embedding_size:
            raise FusebenchError(
                "feat_embed_dim must equal embedding_size when reg_weight > 0 "
                "(the modality BPR terms score users against projected features)"
            )

    def build(self, data: FitData) -> nn.Module:
        module = FREEDOMModule(
            data.n_users,
            self._features,
            int(self.embedding_size),
            int(self.feat_embed_dim),
            bool(self.train_features),
            self.device_,
        )
        present = self.presence(data)
        valid = [valid_rows(f, v) for f, v in zip(module.feats, present)]
        # (n_items, 1) float masks for the modality BPR terms; None where all are present
        self._present = [None if p is None or bool(p.all()) else p.float()[:, None] for p in present]
        weights = mmrec_weights(list(self._features), float(self.mm_image_weight))
        self._mm = frozen_item_graph(list(module.feats), valid, weights, int(self.knn_k))
        self._ui = ui_graph(data.train, self.device_, norm="sym")
        coo = data.train.tocoo()
        r = np.asarray(coo.row, dtype=np.int64)
        c = np.asarray(coo.col, dtype=np.int64)
        keep = np.ones(len(r), dtype=bool)
        if len(r):  # the binary pattern (sum duplicates away)
            key = r * data.n_items + c
            _, first = np.unique(key, return_index=True)
            keep = np.zeros(len(r), dtype=bool)
            keep[first] = True
        self._edges = (r[keep], c[keep], data.n_users, data.n_items)
        self._edge_probs = torch.from_numpy(edge_weights(*self._edges))
        self._gen = torch.Generator().manual_seed(int(data.seed))
        self._masked = None
        return module

    def train_epoch(self) -> float:
        # MMRec's pre_epoch_processing: a fresh degree-sensitive pruning of the user-item graph
        if self.dropout <= 0:
            self._masked = self._ui
        else:
            u, i, nu, ni = self._edges
            self._masked = degree_sensitive_sample(
                u, i, nu, ni, 1.0 - float(self.dropout), self._gen, self.device_, probs=self._edge_probs
            )
        return super().train_epoch()

    def batch_loss(self, users, pos, neg):
        m = self.module_
        u_all, i_all = m.embeddings(self._masked, self._mm, int(self.n_mm_layers), int(self.n_ui_layers))
        u = u_all[users]
        loss = pair_bpr_loss(u, i_all[pos], i_all[neg])
        if self.reg_weight:
            mod = 0.0
            for k in range(len(m.feats)):
                z_pos, z_neg = item_rows(lambda idx, k=k: self._projection(k, idx), m.n_items, pos, neg)
                mod = mod + pair_bpr_loss(u, z_pos, z_neg)
            loss = loss + self.reg_weight * mod
        return loss

    def _projection(self, k: int, idx):
        """Modality k projected; zero for items whose feature is missing (no content signal)."""
        z = self.module_.project(k, idx)
        mask = self._present[k]
        if mask is None:
            return z
        return z * (mask if idx is None else mask[idx])

    def final_embeddings(self):
        return self.module_.embeddings(self._ui, self._mm, int(self.n_mm_layers), int(self.n_ui_layers))
