"""End-to-end fusion (`e2e-attention`): modality encoders trained from raw content with the ranking loss.

The frozen-feature fusion models read vectors an encoder extracted once (`features extract`).
The e2e models read the raw content instead (`datasets.content_inputs`: token ids, small
images, log-mel frame sequences, frame stacks, decoded once and cached) and train a tower per
modality (`towers`: token embeddings, a CNN, a GRU, a (2+1)D CNN) jointly with the id
embeddings and the fusion, through the strategy's own scoring and loss. The benchmark owns
the loop as for every iterative model. `freeze=True` keeps every tower's body at its
initialisation (MiniLM's token embeddings, or random) and trains only the heads: the same
model reading frozen features, which is what the trained encoder is measured against.

`EndToEnd` is the mixin that turns a fusion strategy into its end-to-end form: it replaces
the strategy's inputs (`select_inputs`) and encoders (`encoders`) and gives the towers' bodies
their own learning rate (`encoder_lr` times the model's); the strategy's scoring is unchanged.
"""

from __future__ import annotations

from baselines.base import FitData, register
from baselines.modalities import parse_spec
from baselines.params import POSITIVE, POSITIVE_INT, Options
from datasets.content_inputs import RAW_MODALITIES
from datasets.errors import FusebenchError

from .attention import AttentionFusion
from .layers import fusion_space
from .towers import TEXT_INIT, TEXT_POOLING, ContentEncoders

E2E_LOSSES = ("bpr", "bce", "sampled", "softmax")


def parse_raw_spec(spec: str, available: list[str]) -> list[str]:
    """The raw modalities a `modalities` value selects: "all" (every one the data has) or
    comma-separated names of RAW_MODALITIES, each of which the data must have (the syntax,
    empty or repeated names, is `parse_spec`'s)."""
    names = parse_spec(spec)
    if names is None:
        if not available:
            raise FusebenchError("the dataset has no raw content (item text or a catalogue's files)")
        return list(available)
    for n in names:
        if n not in RAW_MODALITIES:
            raise FusebenchError(f"modality {n!r} is not raw content; raw modalities: all, {', '.join(RAW_MODALITIES)}")
        if n not in available:
            raise FusebenchError(f"the dataset has no raw {n} content; it has: {', '.join(available) or 'none'}")
    return names


# the towers' settings: the defaults of `e2e-attention`'s constructor, and what a strategy that
# takes the mixin without these parameters trains with (`Recommender.param`)
TOWER = {
    "freeze": False,
    "text_init": "minilm",
    "text_pooling": "mean",
    "encoder_lr": 1.0,
    "max_tokens": 64,
    "image_size": 32,
    "audio_steps": 32,
    "video_frames": 8,
}


class EndToEnd:
    """Mixin (before a `FusionRecommender` strategy in the bases): raw inputs and trainable towers."""

    _parameter_constraints = {
        "loss": [Options(*E2E_LOSSES)],
        "modalities": [str],
        "freeze": [bool],
        "text_init": [Options(*TEXT_INIT)],
        "text_pooling": [Options(*TEXT_POOLING)],
        "encoder_lr": [POSITIVE],
        "max_tokens": [POSITIVE_INT],
        "image_size": [POSITIVE_INT],
        "audio_steps": [POSITIVE_INT],
        "video_frames": [POSITIVE_INT],
    }

    @classmethod
    def needs(cls, params=None) -> set[str]:
        return {"content"}

    def validate(self) -> None:
        super().validate()
        parse_raw_spec(self.modalities, list(RAW_MODALITIES))

    def tower(self, name: str):
        """A tower setting: the model's parameter, else `TOWER`'s value."""
        return self.param(name, TOWER[name])

    def input_settings(self, modality: str) -> dict:
        size = int(self.tower("image_size"))
        return {
            "text": {"max_tokens": int(self.tower("max_tokens"))},
            "image": {"size": size},
            "audio": {"steps": int(self.tower("audio_steps"))},
            "video": {"frames": int(self.tower("video_frames")), "size": size},
        }[modality]

    def select_inputs(self, data: FitData) -> list[str]:
        if data.content is None:
            raise FusebenchError(f"{self.name} reads raw content; this data carries none (FitData.content)")
        names = parse_raw_spec(self.modalities, data.content.available())
        self._inputs = {m: data.content.inputs(m, **self.input_settings(m)) for m in names}
        return [f"{m}/raw" for m in names]

    def encoders(self, dim: int, **kwargs) -> ContentEncoders:
        return ContentEncoders(
            self._inputs,
            dim,
            freeze=bool(self.tower("freeze")),
            text_init=self.tower("text_init"),
            text_pooling=self.tower("text_pooling"),
            width=int(self.embedding_size),
        )

    def param_groups(self):
        towers = {id(p) for p in self.module_.encoders.bodies.parameters()}  # empty when frozen
        groups = [{"params": [p for p in self.module_.parameters() if id(p) not in towers]}]
        if towers:
            lr = self.learning_rate * float(self.tower("encoder_lr"))
            groups.append({"params": list(self.module_.encoders.bodies.parameters()), "lr": lr})
        return groups


@register
class E2EAttention(EndToEnd, AttentionFusion):
    """Attention fusion whose text, image, audio and video encoders train from raw content.

    The model of `fusion-attention` (user-conditioned attention over the id token and one token
    per modality, cold items' id embeddings kept at zero) with each modality's token produced
    from the raw content by a tower trained with the ranking loss: token embeddings with mean
    pooling or a Transformer layer (text), a small CNN (images), a GRU over log-mel frames
    (audio), a (2+1)D CNN over sampled frames (video). `freeze=True` trains only the heads
    over the towers' initial outputs: the frozen-feature baseline of the same model. Reads
    `FitData.content` (a dataset's item text, a catalogue folder's files); an item missing a
    modality drops that token.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the id embeddings, of every modality's token and of randomly initialised token
        embeddings. Accepted: int >= 1. Tuned by `search_space`.
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
        "bpr" (pairwise), "bce" (sigmoid cross-entropy of each positive and its sampled
        negative), "sampled" (logQ-corrected softmax over the batch's candidates) or "softmax"
        (against every item, which encodes every item each step). Accepted: one of bpr, bce,
        sampled, softmax. Tuned by `search_space` (bpr or sampled).
    id_dropout : float, default 0.0
        Probability of zeroing an item's id embedding in a training batch (DropoutNet).
        Accepted: real in [0, 1). Tuned by `search_space`.
    modalities : str, default "all"
        The raw content used: "all" (every kind the data has) or comma-separated names among
        text, image, audio, video.
    freeze : bool, default False
        Keep the towers' bodies at their initialisation; only the heads train.
    text_init : str, default "minilm"
        Token embeddings from all-MiniLM-L6-v2's input embeddings (384-d) or "random"
        (`embedding_size`-d). Accepted: one of minilm, random.
    text_pooling : str, default "mean"
        "mean" over the tokens, or "transformer" (one encoder layer with learned positions,
        then the mean). Accepted: one of mean, transformer.
    encoder_lr : float, default 1.0
        The towers' learning rate as a multiple of `learning_rate`. Accepted: real > 0.
    max_tokens : int, default 64
        Tokens kept per text. Accepted: int >= 1.
    image_size : int, default 32
        Side of the resized, centre-cropped images and video frames. Accepted: int >= 1.
    audio_steps : int, default 32
        Length of the log-mel frame sequence (time segments of the first 30 s). Accepted: int >= 1.
    video_frames : int, default 8
        Frames sampled per video. Accepted: int >= 1.

    Attributes
    ----------
    modalities_ : list of str
        The raw modalities used, as "text/raw", "image/raw", ...
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        The attention model (`fusion-attention`'s) with `encoders` a `towers.ContentEncoders`.

    References
    ----------
    Chen, Zhang, He, Nie, Liu, Chua. Attentive Collaborative Filtering: Multimedia
    Recommendation with Item- and Component-Level Attention. SIGIR 2017.

    Yuan, Yuan, Cheng, Mao, Sun, Ni, Lin, Zhang, Xie. Where to Go Next for Recommender
    Systems? ID- vs. Modality-based Recommender Models Revisited. SIGIR 2023 (end-to-end
    training of the item encoders with the recommender).

    Ni, Cheng, Li, Yuan, Yuan, Xie, Wang, Zhang. A Content-Driven Micro-Video Recommendation
    Dataset at Scale (MicroLens). arXiv 2309.15379, 2023.

    Tran, Wang, Torresani, Ray, LeCun, Paluri. A Closer Look at Spatiotemporal Convolutions
    for Action Recognition. CVPR 2018 ((2+1)D convolutions).
    """

    name = "e2e-attention"

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 60,
        loss: str = "bpr",
        id_dropout: float = 0.0,
        modalities: str = "all",
        freeze: bool = TOWER["freeze"],
        text_init: str = TOWER["text_init"],
        text_pooling: str = TOWER["text_pooling"],
        encoder_lr: float = TOWER["encoder_lr"],
        max_tokens: int = TOWER["max_tokens"],
        image_size: int = TOWER["image_size"],
        audio_steps: int = TOWER["audio_steps"],
        video_frames: int = TOWER["video_frames"],
    ):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.loss = loss
        self.id_dropout = id_dropout
        self.modalities = modalities
        self.freeze = freeze
        self.text_init = text_init
        self.text_pooling = text_pooling
        self.encoder_lr = encoder_lr
        self.max_tokens = max_tokens
        self.image_size = image_size
        self.audio_steps = audio_steps
        self.video_frames = video_frames

    @classmethod
    def search_space(cls, trial):
        return fusion_space(trial)
