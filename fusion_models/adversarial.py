"""Adversarial modality alignment (`fusion-adversarial`).

shared space       z_i0 = e_i (id embedding),  z_im = h_m(f_i^m)   all in R^d
item vector        q_i = e_i + mean_m z_im            (over the modalities item i has)
score(u, i)        = <p_u, q_i>
discriminator      D: R^d -> K logits, K = M + 1 (id, modality 1, ..., modality M)
loss               = BPR + adv_weight * CE(D(GRL(z)), source of z)    (adversary="reversal")

The discriminator learns to tell which source a vector came from; a gradient reversal layer
(Ganin & Lempitsky, ICML 2015) between the vectors and D flips the gradient that reaches the
projections and the id embeddings, so they learn to make the sources indistinguishable: the
content projections are pulled into the distribution of the collaborative (id) space, the
alignment that lets content stand in for interactions. The id embedding is one of the classes,
so the model aligns even a single modality. One backward pass trains both players (D descends
on the cross-entropy, the encoders ascend on it); `discriminator_accuracy()` reports how well
D still separates the sources over all items (1/K = perfectly aligned). The default adversary,
"confusion", splits the two players instead: D descends on the cross-entropy of detached
vectors, and the vectors learn to make the frozen D output the uniform distribution over the
sources (the domain confusion loss of Tzeng et al., ICCV 2015).

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay, adv_weight 0.1,
discriminator hidden size 64, 60 epochs (the benchmark early-stops on validation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import FitData, register
from baselines.params import NON_NEGATIVE, POSITIVE_INT, Options

from .layers import ItemTowerFusion, ModalityEncoders, fusion_space, id_embeddings, mlp

ADVERSARIES = ("confusion", "reversal")


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient multiplied by -1 backward."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class AdversarialModule(nn.Module):
    def __init__(self, n_users: int, encoders: ModalityEncoders, dim: int, hidden: int):
        super().__init__()
        self.encoders = encoders
        self.n_items = encoders.n_items
        self.user, self.item = id_embeddings(n_users, self.n_items, dim)
        self.discriminator = mlp([dim, hidden, len(encoders) + 1])

    def sources(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(K, n, d): the id embedding then each modality's projection."""
        ids = self.item.rows(idx)
        return torch.cat([ids.unsqueeze(0), self.encoders(idx)], dim=0)

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        z = self.sources(idx)
        present = self.encoders.presence(idx)
        content = z[1:].sum(0) / present.sum(0).clamp(min=1.0)  # missing ones are zero vectors
        return z[0] + content

    def source_vectors(self, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The present (source, item) vectors (N, d) and their source labels (N,)."""
        z = self.sources(idx)
        present = self.encoders.presence(idx)[..., 0] > 0
        keep = torch.cat([torch.ones_like(present[:1]), present])  # (K, n): the id always
        labels = torch.arange(z.shape[0], device=z.device)[:, None].expand_as(keep)
        # directions only: BPR grows the norms freely, and a norm gap would be a trivial cue
        return F.normalize(z[keep], dim=-1), labels[keep]

    def frozen_discriminator(self, x: torch.Tensor) -> torch.Tensor:
        """D's logits with its parameters detached: gradients reach only the vectors."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, params, (x,))


@register
class AdversarialFusion(ItemTowerFusion):
    """Adversarial alignment: content projections made indistinguishable from the id embeddings.

    q_i = e_i + mean_m h_m(f_i^m) over the modalities item i has, score(u, i) = <e_u, q_i>. A
    discriminator D learns which source (id, modality 1, ..., M) a vector of the batch's
    positive items came from (directions only: vectors are L2-normalised), and the vectors learn
    to defeat it, pulling the content projections into the collaborative space.
    `discriminator_accuracy()` reports how well D still separates the sources (1/(M + 1):
    aligned). Item id embeddings of items without training interactions are zeroed and kept at
    zero, so a cold-start item is scored by its content. A fusion strategy of this benchmark,
    not a published model.

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
    adv_weight : float, default 0.1
        Weight of the adversarial term added to the ranking loss (0: no adversary).
        Accepted: real >= 0. Tuned by `search_space`.
    adversary : str, default "confusion"
        "confusion": D minimises its cross-entropy on detached vectors while the vectors make
        the frozen D output the uniform distribution; "reversal": one cross-entropy through a
        gradient reversal layer trains both players. Accepted: one of confusion, reversal.
        Tuned by `search_space`.
    hidden_size : int, default 64
        Hidden width of the discriminator MLP (d -> hidden_size -> M + 1). Accepted: int >= 1.
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
        non-persistent buffers) and the `discriminator`.

    References
    ----------
    Ganin, Lempitsky. Unsupervised Domain Adaptation by Backpropagation. ICML 2015 (the
    gradient reversal layer).

    Tzeng, Hoffman, Darrell, Saenko. Simultaneous Deep Transfer Across Domains and Tasks.
    ICCV 2015 (the domain confusion loss).

    Volkovs, Yu, Poutanen. DropoutNet: Addressing Cold Start in Recommender Systems. NeurIPS
    2017 (`id_dropout`).

    Yi et al. Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations.
    RecSys 2019 (`loss="sampled"`).
    """

    name = "fusion-adversarial"
    zero_cold_ids = True
    _parameter_constraints = {
        "adv_weight": [NON_NEGATIVE],
        "adversary": [Options(*ADVERSARIES)],
        "hidden_size": [POSITIVE_INT],
    }

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 60,
        adv_weight: float = 0.1,
        adversary: str = "confusion",
        hidden_size: int = 64,
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
        self.adv_weight = adv_weight
        self.adversary = adversary
        self.hidden_size = hidden_size
        self.loss = loss
        self.id_dropout = id_dropout
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {
            **fusion_space(trial),
            "adv_weight": trial.suggest_float("adv_weight", 1e-3, 1.0, log=True),
            "adversary": trial.suggest_categorical("adversary", list(ADVERSARIES)),
        }

    def build(self, data: FitData) -> nn.Module:
        dim = int(self.embedding_size)
        return AdversarialModule(data.n_users, self.encoders(dim), dim, int(self.hidden_size))

    def extra_loss(self, users, pos, neg, p, q_pos, q_neg):
        if not self.adv_weight:
            return None
        m = self.module_
        x, labels = m.source_vectors(torch.unique(pos))
        if self.adversary == "reversal":
            return self.adv_weight * F.cross_entropy(m.discriminator(GradientReversal.apply(x)), labels)
        # confusion: D learns the sources on detached vectors; the vectors learn to make the
        # (frozen) D output the uniform distribution over sources
        d_loss = F.cross_entropy(m.discriminator(x.detach()), labels)
        confusion = -F.log_softmax(m.frozen_discriminator(x), dim=-1).mean(-1).mean()
        return self.adv_weight * (d_loss + confusion)

    @torch.no_grad()
    def discriminator_accuracy(self) -> float:
        """Share of (source, item) vectors the discriminator assigns to their true source."""
        self.module_.eval()
        x, labels = self.module_.source_vectors(None)
        return float((self.module_.discriminator(x).argmax(-1) == labels).float().mean())
