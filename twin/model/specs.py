"""What a modality is made of and how it is modelled: :class:`ModalitySpec`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from twin.nn.layers import WEIGHT_PRIORS

#: Likelihood families, by feature type.  The first entry of each is the default.
LIKELIHOODS: dict[str, tuple[str, ...]] = {
    "continuous": ("gaussian", "student_t"),
    "binary": ("bernoulli",),
    "categorical": ("categorical",),
    "count": ("negative_binomial", "poisson"),
}

#: Modality kinds.  Only vectors have encoders/decoders in this version; the others
#: name the families that plug into the same interface later.
MODALITY_KINDS = ("vector", "image", "track", "contact_map")


@dataclass(frozen=True)
class ModalitySpec:
    """How one modality is encoded, decoded and scored.

    The feature types come from the cohort schema (continuous, binary, categorical,
    count); the spec chooses the likelihood of each type and the network families.
    Features of different types inside one modality (e.g. clinical: continuous labs and
    a categorical smoking status) share the decoder trunk and get one likelihood head
    per type.

    Parameters
    ----------
    kind
        ``"vector"`` (a fixed set of features per individual).  Image, track and
        contact-map modalities are reserved for encoder families added later.
    continuous
        ``"gaussian"`` or ``"student_t"`` (heavy tails), both with a learned scale per
        feature on the standardised scale; Student-t also learns its degrees of
        freedom per feature (kept above 2.1 so the predictive sd exists).
    counts
        ``"negative_binomial"`` (learned dispersion per feature) or ``"poisson"``.
    encoder, decoder
        Network families (:data:`twin.nn.ENCODER_FAMILIES`,
        :data:`twin.nn.DECODER_FAMILIES`); ``"linear"`` is an MLP without hidden layers.
    encoder_hidden, decoder_hidden
        Hidden layer widths.
    activation
        Non-linearity of the MLPs (``elu``, ``silu``, ``tanh``, ``relu``).
    dropout
        Dropout rate inside the encoder and decoder MLPs while training.
    decoder_weights
        ``"ard"`` (default): the decoder's output layer has a posterior over its weights
        with an ARD prior per feature, which shrinks loadings without support (no
        imputation from spurious cross-modal correlations) and adds their uncertainty to
        the predictive; ``"group_ard"``: also an ARD prior per latent dimension on the
        first layer (modalities switch off dimensions they do not share; more
        conservative); ``"point"``: point estimates.  See :class:`twin.nn.MLPDecoder`.
    increasing
        ``True``: the modality's features are ordered (schema order) and their
        conditional means never decrease along that order, for every latent state: a
        growth curve such as strength at increasing test ages
        (:class:`twin.model.increasing.IncreasingMeans`).  Every feature must be
        continuous, and there must be at least two.

    Examples
    --------
    >>> ModalitySpec(continuous="student_t", decoder="linear").likelihood("continuous")
    'student_t'
    """

    kind: str = "vector"
    continuous: str = "gaussian"
    counts: str = "negative_binomial"
    encoder: str = "mlp"
    decoder: str = "mlp"
    encoder_hidden: tuple[int, ...] = field(default=(128,))
    decoder_hidden: tuple[int, ...] = field(default=(128,))
    activation: str = "elu"
    dropout: float = 0.0
    decoder_weights: str = "ard"
    increasing: bool = False

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"modality kind must be one of {MODALITY_KINDS}, got {self.kind!r}")
        if self.continuous not in LIKELIHOODS["continuous"]:
            raise ValueError(
                f"continuous likelihood must be one of {LIKELIHOODS['continuous']}, "
                f"got {self.continuous!r}"
            )
        if self.counts not in LIKELIHOODS["count"]:
            raise ValueError(
                f"count likelihood must be one of {LIKELIHOODS['count']}, got {self.counts!r}"
            )
        if self.decoder_weights not in WEIGHT_PRIORS:
            raise ValueError(
                f"decoder_weights must be one of {WEIGHT_PRIORS}, got {self.decoder_weights!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.increasing, bool):
            raise TypeError(f"increasing must be True or False, got {self.increasing!r}")
        object.__setattr__(self, "encoder_hidden", tuple(int(h) for h in self.encoder_hidden))
        object.__setattr__(self, "decoder_hidden", tuple(int(h) for h in self.decoder_hidden))

    def likelihood(self, feature_type: str) -> str:
        """Likelihood family used for features of ``feature_type``."""
        if feature_type == "continuous":
            return self.continuous
        if feature_type == "count":
            return self.counts
        if feature_type in LIKELIHOODS:
            return LIKELIHOODS[feature_type][0]
        raise ValueError(f"unknown feature type {feature_type!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder_hidden"] = list(self.encoder_hidden)
        d["decoder_hidden"] = list(self.decoder_hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ModalitySpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModalitySpec fields {sorted(unknown)}")
        return cls(**dict(d))
