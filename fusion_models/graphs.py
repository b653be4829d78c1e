"""Sparse graph utilities shared by the graph-based multimodal models (LATTICE, FREEDOM, BM3).

Everything stays sparse: an item-item kNN graph has `k` edges per item, the user-item graph one
edge per training pair (each way), so nothing here is O(n_items^2) in memory. The kNN search
itself scores every pair once, in row chunks (`chunk_size` rows at a time).

- `cosine_knn(x, k, valid)`: the `k` most cosine-similar items of each item (the item itself
  included, as MMRec's `torch.topk` over the full similarity row includes it). Items that are
  not `valid` (missing feature, or an all-zero row whose cosine is undefined) get no
  neighbours and are nobody's neighbour.
- `cosine_values(x, rows, cols)`: the cosines of given pairs, differentiable (LATTICE learns
  through the values of its kNN graph; only the selected entries carry gradient, as with
  MMRec's `topk` + `scatter`).
- `sym_normalize(rows, cols, values, n, eps)`: D^-1/2 A D^-1/2 with D the row sums of A
  (MMRec's `compute_normalized_laplacian`: for a directed kNN graph the row sums are used on
  both sides). `eps=0`: rows summing to 0 give 0 (LATTICE's utils); `eps=1e-7`: FREEDOM's.
  Row sums are segmented sums (`row_sums`), not atomic scatter-adds.
- `union(edge_lists)`, `union_values(...)`: the sum of several sparse matrices over the union
  of their patterns, without atomic scatter-adds (deterministic on CUDA too).
- `SparseGraph`: a fixed sparsity pattern with a differentiable `mm(x, values)` (gradients to
  `x` and, when they require it, to `values`); A and A^T are kept in CSR, the fastest sparse @
  dense layout on CPU and CUDA.
- `ui_graph(train, norm)`: the (n_users + n_items)^2 bipartite adjacency, either symmetric
  D^-1/2 A D^-1/2 (`baselines.lightgcn.normalized_adjacency`, MMRec's FREEDOM/BM3
  `get_norm_adj_mat`) or LATTICE's random-walk D^-1 (A + I).
- `lightgcn(graph, ego, n_layers)`: mean of the layer embeddings 0..n_layers.
- `degree_sensitive_sample(...)`: FREEDOM's per-epoch degree-sensitive edge pruning.
- `GraphFusion`: the common base of the three models (raw, trainable features as in MMRec,
  presence masks, a scoring cache of the final embeddings).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from baselines.lightgcn import normalized_adjacency, propagate
from baselines.modalities import feature_mask
from baselines.params import NON_NEGATIVE
from baselines.torch_base import CachedScoring
from datasets.memory import require

from .layers import FusionRecommender


# --------------------------------------------------------------------------------------------
# kNN graphs from features
# --------------------------------------------------------------------------------------------
def valid_rows(x: torch.Tensor, present: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """bool (n,): rows that may take part in a kNN graph: present and of non-zero norm."""
    ok = torch.linalg.vector_norm(x.detach(), dim=1) > 0
    if present is not None:
        ok = (
            ok
            & torch.as_tensor(
                np.asarray(present, dtype=bool) if not torch.is_tensor(present) else present, device=x.device
            ).bool()
        )
    return ok


@torch.no_grad()
def cosine_knn(
    x: torch.Tensor, k: int, valid: torch.Tensor | None = None, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) int64 edges: each valid row's top-`k` valid columns by cosine similarity.

    A row with fewer than `k` valid candidates keeps all of them. Rows come out sorted, and
    within a row the columns come in decreasing similarity (ties: torch.topk's order).
    """
    x = x.detach()
    if valid is None:
        valid = valid_rows(x)
    valid = valid.to(x.device).bool()
    idx = torch.nonzero(valid).flatten()
    n_valid = len(idx)
    kk = min(int(k), n_valid)
    empty = torch.zeros(0, dtype=torch.long, device=x.device)
    if kk <= 0:
        return empty, empty
    if x.device.type == "cpu":  # one chunk of similarities, the normalised copy and the edges
        need = (
            2 * 4 * min(chunk_size, n_valid) * n_valid
            + 2 * x.element_size() * n_valid * x.shape[1]
            + 3 * 8 * n_valid * kk
        )
        require(need, f"the item kNN graph over {n_valid:,} items (k={kk})", "choose a smaller knn_k")
    xv = x[idx]
    xv = xv / torch.linalg.vector_norm(xv, dim=1, keepdim=True)
    rows, cols = [], []
    for start in range(0, n_valid, chunk_size):
        sim = xv[start : start + chunk_size] @ xv.T
        top = torch.topk(sim, kk, dim=-1).indices  # positions among the valid items
        rows.append(idx[start : start + chunk_size, None].expand(-1, kk).reshape(-1))
        cols.append(idx[top.reshape(-1)])
    return torch.cat(rows), torch.cat(cols)


def cosine_values(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """cos(x[rows], x[cols]), differentiable in x (x / ||x||, as MMRec's `build_sim`)."""
    xn = x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return (xn[rows] * xn[cols]).sum(-1)


def row_sums(rows: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) sums of `values` per row, differentiable; a segmented sum over the rows in order
    (no atomic scatter-add, so the same on every run on CUDA too)."""
    if len(rows) and not bool((rows[1:] >= rows[:-1]).all()):
        order = torch.argsort(rows, stable=True)
        rows, values = rows[order], values[order]
    lengths = torch.bincount(rows, minlength=n)
    if len(values) == 0:
        return torch.zeros(n, dtype=values.dtype, device=values.device)
    return torch.segment_reduce(values, "sum", lengths=lengths)


def sym_normalize(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int, eps: float = 0.0
) -> torch.Tensor:
    """Values of D^-1/2 A D^-1/2, D = row sums of A (+ eps); a zero row sum gives 0.

    Differentiable in `values` (the row sums included), like MMRec's dense version.
    """
    deg = row_sums(rows, values, n) + eps
    inv = deg.pow(-0.5)
    inv = torch.where(torch.isinf(inv), torch.zeros_like(inv), inv)
    return inv[rows] * values * inv[cols]


def union(
    edge_lists: list[tuple[torch.Tensor, torch.Tensor]], n_cols: int
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The union of several edge lists (each without duplicates): sorted (rows, cols) and, per
    list, the position of each of its edges in the union."""
    keys = [r * n_cols + c for r, c in edge_lists]
    uniq = torch.unique(torch.cat(keys))  # sorted
    positions = [torch.searchsorted(uniq, key) for key in keys]
    return uniq // n_cols, uniq % n_cols, positions


def union_values(values: list[torch.Tensor], positions: list[torch.Tensor], n_edges: int) -> torch.Tensor:
    """Sum of per-list values on the union's edges; deterministic (no scatter-add collisions:
    each list writes its own column, then the columns are summed)."""
    cols = [torch.zeros(n_edges, dtype=v.dtype, device=v.device).index_put((p,), v) for v, p in zip(values, positions)]
    return torch.stack(cols, dim=1).sum(1)


# --------------------------------------------------------------------------------------------
# sparse matrix with a fixed pattern
# --------------------------------------------------------------------------------------------
def _csr(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
    """(crow_indices, col_indices, permutation to CSR order) of a duplicate-free pattern."""
    order = torch.argsort(rows * n_cols + cols)
    counts = torch.bincount(rows, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow, cols[order].contiguous(), order


def _csr_tensor(crow, col, values, shape):
    with warnings.catch_warnings():  # "sparse CSR support is in beta": used read-only
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, x, graph):
        ctx.graph = graph
        ctx.save_for_backward(values, x)
        return graph._matrix(values) @ x

    @staticmethod
    def backward(ctx, grad):
        values, x = ctx.saved_tensors
        g = ctx.graph
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_values = (grad[g.rows] * x[g.cols]).sum(-1)
        if ctx.needs_input_grad[1]:
            grad_x = g._matrix(values, transpose=True) @ grad
        return grad_values, grad_x, None


class SparseGraph:
    """A sparse (n_rows, n_cols) matrix with a fixed, duplicate-free pattern (`rows`, `cols`)
    and optional fixed `values`; `mm(x, values)` is differentiable in x and in values.

    `symmetric=True` declares that the matrix (pattern and values) equals its transpose, so the
    backward pass reuses it instead of keeping A^T.
    """

    def __init__(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        shape: tuple[int, int],
        values: torch.Tensor | None = None,
        symmetric: bool = False,
    ):
        self.rows, self.cols = rows.long(), cols.long()
        self.shape = (int(shape[0]), int(shape[1]))
        self.symmetric = symmetric
        self._crow, self._col, self._perm = _csr(self.rows, self.cols, *self.shape)
        if not symmetric:
            self._tcrow, self._tcol, self._tperm = _csr(self.cols, self.rows, self.shape[1], self.shape[0])
        self._fixed = None
        self.values = None
        if values is not None:
            self.set_values(values)

    @classmethod
    def from_scipy(cls, m: sp.spmatrix, device, symmetric: bool = False) -> "SparseGraph":
        coo = sp.coo_matrix(m)
        coo.sum_duplicates()
        t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a).astype(dt)).to(device)  # noqa: E731
        return cls(
            t(coo.row, np.int64), t(coo.col, np.int64), coo.shape, values=t(coo.data, np.float32), symmetric=symmetric
        )

    @property
    def nnz(self) -> int:
        return len(self.rows)

    def set_values(self, values: torch.Tensor) -> None:
        """Fix the values (detached); their CSR forms are built once here."""
        self.values = values.detach()
        self._fixed = (self._build(self.values), None if self.symmetric else self._build(self.values, True))

    def _build(self, values, transpose=False):
        if transpose and not self.symmetric:
            return _csr_tensor(self._tcrow, self._tcol, values[self._tperm], self.shape[::-1])
        return _csr_tensor(self._crow, self._col, values[self._perm], self.shape)

    def _matrix(self, values, transpose=False):
        if self._fixed is not None and values is self.values:
            a, at = self._fixed
            return a if not transpose or self.symmetric else at
        return self._build(values, transpose)

    def mm(self, x: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """A @ x with A's values `values` (default: the fixed ones)."""
        if values is None:
            if self.values is None:
                raise ValueError("SparseGraph has no fixed values; pass values")
            values = self.values
        return _SpMM.apply(values, x, self)

    def to_dense(self) -> torch.Tensor:
        """Dense copy (tests and small examples only)."""
        out = torch.zeros(self.shape, dtype=self.values.dtype, device=self.values.device)
        out[self.rows, self.cols] = self.values
        return out


# --------------------------------------------------------------------------------------------
# user-item graph
# --------------------------------------------------------------------------------------------
def _binary(train: sp.spmatrix) -> sp.csr_matrix:
    r = sp.csr_matrix(train, dtype=np.float32)
    r.sum_duplicates()
    r.data = np.ones_like(r.data)
    return r


def ui_adjacency(train: sp.spmatrix, norm: str = "sym") -> sp.csr_matrix:
    """The (n_users + n_items)^2 bipartite adjacency of the binary training matrix, users first.

    norm="sym": D^-1/2 A D^-1/2, degrees + 1e-7 (MMRec's FREEDOM/BM3 `get_norm_adj_mat`;
    it is `baselines.lightgcn.normalized_adjacency`). norm="rw_self_loop": D^-1 (A + I) with
    D the row sums of A + I (MMRec's LATTICE `get_adj_mat`); not symmetric.
    """
    if norm == "sym":
        return normalized_adjacency(train).tocsr()
    if norm != "rw_self_loop":
        raise ValueError(f"unknown normalisation {norm!r}")
    r = _binary(train)
    n = r.shape[0] + r.shape[1]
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    a = sp.csr_matrix(a, shape=(n, n)) + sp.eye(n, dtype=np.float32, format="csr")
    d = np.asarray(a.sum(axis=1)).ravel()
    return (sp.diags((1.0 / d).astype(np.float32)) @ a).tocsr()


def ui_graph(train: sp.spmatrix, device, norm: str = "sym") -> SparseGraph:
    return SparseGraph.from_scipy(ui_adjacency(train, norm), device, symmetric=(norm == "sym"))


def lightgcn(graph: SparseGraph, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN propagation over `graph`: the mean of ego, A ego, ..., A^n_layers ego."""
    return propagate(graph.mm, ego, n_layers)


def edge_weights(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, eps: float = 1e-7) -> np.ndarray:
    """1 / sqrt((deg_u + eps) (deg_i + eps)) per user-item edge (MMRec's `_normalize_adj_m`)."""
    du = np.bincount(users, minlength=n_users).astype(np.float64) + eps
    di = np.bincount(items, minlength=n_items).astype(np.float64) + eps
    return (du[users] ** -0.5 * di[items] ** -0.5).astype(np.float32)


def degree_sensitive_sample(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    keep: float,
    generator: torch.Generator,
    device,
    probs: torch.Tensor | None = None,
) -> SparseGraph:
    """FREEDOM's degree-sensitive edge pruning: keep int(nnz * keep) user-item edges drawn
    without replacement with probability proportional to 1/sqrt(deg_u deg_i), re-normalise the
    kept edges symmetrically (degrees of the kept graph + 1e-7) and return the symmetric
    (n_users + n_items)^2 adjacency. Sampling runs on the CPU with `generator`, so a seed gives
    the same graph on every device."""
    if probs is None:
        probs = torch.from_numpy(edge_weights(users, items, n_users, n_items))
    n_keep = int(len(users) * keep)
    kept = torch.multinomial(probs, n_keep, replacement=False, generator=generator).numpy()
    u, i = users[kept], items[kept]
    vals = edge_weights(u, i, n_users, n_items)
    rows = np.concatenate([u, i + n_users])
    cols = np.concatenate([i + n_users, u])
    n = n_users + n_items
    m = sp.csr_matrix((np.concatenate([vals, vals]), (rows, cols)), shape=(n, n))
    return SparseGraph.from_scipy(m, device, symmetric=True)


# --------------------------------------------------------------------------------------------
# the common face of the graph-based fusion models
# --------------------------------------------------------------------------------------------
def feature_table(x: np.ndarray, trainable: bool, device) -> torch.nn.Parameter:
    """An item-feature matrix as a parameter: MMRec loads features with
    `nn.Embedding.from_pretrained(feat, freeze=False)`, so the optimiser updates them."""
    return torch.nn.Parameter(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device), requires_grad=bool(trainable)
    )


class GraphFusion(CachedScoring, FusionRecommender):
    """Base of LATTICE, FREEDOM and BM3: raw features by default (MMRec reads the .npy files
    as they are), presence masks per selected modality, and a scoring cache of the final user
    and item embeddings (the full-graph propagation runs once per evaluation, not once per
    batch of users), invalidated by every epoch and by `set_state`.

    Subclasses implement `final_embeddings() -> (users (n_users, d), items (n_items, d))`
    for scoring (under no_grad), besides `build` and `batch_loss`.
    """

    _parameter_constraints = {"train_features": [bool], "reg_weight": [NON_NEGATIVE]}

    def presence(self, data) -> list[torch.Tensor | None]:
        """Per selected modality: bool (n_items,) on the device (True = present) or None."""
        masks = [feature_mask(getattr(data, "feature_masks", None), name, data.n_items) for name in self._features]
        return [None if m is None else torch.from_numpy(m).to(self.device_) for m in masks]

    def n_parameters(self) -> int:
        """Learned scalars: frozen features (`train_features=False`) are input data."""
        return int(sum(p.numel() for p in self.module_.parameters() if p.requires_grad))
