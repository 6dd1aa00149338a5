"""One modality inside the population model: input preparation, encoder, decoder, heads."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from twin.cohort import ModalitySchema
from twin.model.increasing import IncreasingMeans
from twin.model.likelihoods import HEADS, CategoricalHead, LikelihoodHead, masked_mean_sd
from twin.model.specs import ModalitySpec
from twin.nn.decoders import Decoder, build_decoder
from twin.nn.encoders import Encoder, GaussianExpert, build_encoder


class ModalityBlock(nn.Module):
    """Encoder, decoder and likelihood heads of one vector modality.

    Encoder input: continuous features standardised with training moments, counts as
    standardised ``log1p``, binary as ``2x - 1``, categorical one-hot; every unobserved
    entry is 0 and the mask is passed alongside, so 0 never stands for "unobserved".

    Parameters
    ----------
    schema
        The modality's features (types and levels).
    spec
        Likelihood and network choices.
    latent_dim
        Dimension of the shared latent.
    n_covariates
        Width of the encoded covariates the decoder sees.
    """

    def __init__(
        self, schema: ModalitySchema, spec: ModalitySpec, latent_dim: int, n_covariates: int = 0
    ):
        super().__init__()
        if spec.kind != "vector":
            raise NotImplementedError(
                f"modality {schema.name!r}: kind {spec.kind!r} has no encoder family yet; "
                "only 'vector' modalities are supported in this version"
            )
        self.name = schema.name
        types = [f.type for f in schema.features]
        n = len(types)
        self.register_buffer("is_count", torch.tensor([t == "count" for t in types]))
        self.register_buffer("is_categorical", torch.tensor([t == "categorical" for t in types]))
        self.register_buffer("input_center", torch.zeros(n))
        self.register_buffer("input_scale", torch.ones(n))
        self.register_buffer("is_binary", torch.tensor([t == "binary" for t in types]))
        self.input_center[self.is_binary] = 0.5
        self.input_scale[self.is_binary] = 0.5
        cat_cols = [(j, lv) for j, f in enumerate(schema.features) for lv in range(len(f.levels))]
        self.register_buffer(
            "onehot_feature", torch.tensor([j for j, _ in cat_cols], dtype=torch.long)
        )
        self.register_buffer(
            "onehot_level", torch.tensor([lv for _, lv in cat_cols], dtype=torch.float32)
        )

        groups: dict[str, list[int]] = {}
        for j, t in enumerate(types):
            groups.setdefault(spec.likelihood(t), []).append(j)
        heads = []
        for family, index in groups.items():
            if family == "categorical":
                heads.append(
                    CategoricalHead(index, [len(schema.features[j].levels) for j in index])
                )
            else:
                heads.append(HEADS[family](index))
        self.heads = nn.ModuleList(heads)
        bounds = [0]
        for h in heads:
            bounds.append(bounds[-1] + h.n_outputs)
        self.output_bounds = bounds
        self.increasing: IncreasingMeans | None = None
        if spec.increasing:
            other = sorted({t for t in types if t != "continuous"})
            if other or n < 2:
                raise ValueError(
                    f"modality {schema.name!r}: increasing=True needs at least two features, "
                    "all continuous (ordered, e.g. strength at increasing ages); it has "
                    + (f"{other} features" if other else f"{n} feature")
                )
            self.increasing = IncreasingMeans(n)

        self.encoder: Encoder = build_encoder(
            spec.encoder,
            n_inputs=n + len(cat_cols),
            n_features=n,
            latent_dim=latent_dim,
            hidden=spec.encoder_hidden,
            activation=spec.activation,
            dropout=spec.dropout,
        )
        self.decoder: Decoder = build_decoder(
            spec.decoder,
            latent_dim=latent_dim,
            n_outputs=bounds[-1],
            hidden=spec.decoder_hidden,
            activation=spec.activation,
            dropout=spec.dropout,
            n_covariates=n_covariates,
            weights=spec.decoder_weights,
        )

    @property
    def n_features(self) -> int:
        return int(self.is_count.numel())

    # ------------------------------------------------------------------ statistics
    def fit_statistics(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Training moments for the encoder input and the likelihood heads."""
        numeric = ~self.is_categorical & ~self.is_binary
        x = torch.where(self.is_count, torch.log1p(values.clamp_min(0)), values)
        center, scale = masked_mean_sd(x, mask)
        self.input_center.copy_(torch.where(numeric, center, self.input_center))
        self.input_scale.copy_(torch.where(numeric, scale, self.input_scale))
        for head in self.heads:
            head.fit_statistics(values[:, head.index], mask[:, head.index])
        if self.increasing is not None:
            (head,) = self.heads  # one continuous head over every feature, in order
            self.increasing.fit_statistics(head.center, head.scale)

    # ------------------------------------------------------------------ encoder side
    def encoder_input(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, n_features + n_onehot)`` prepared input, 0 at unobserved entries."""
        x = torch.where(self.is_count, torch.log1p(values.clamp_min(0)), values)
        x = (x - self.input_center) / self.input_scale
        x = torch.where(mask & ~self.is_categorical, x, x.new_zeros(()))
        if self.onehot_feature.numel():
            codes = values[:, self.onehot_feature]
            on = (codes == self.onehot_level) & mask[:, self.onehot_feature]
            x = torch.cat([x, on.to(x.dtype)], dim=-1)
        return x

    def expert(
        self, values: torch.Tensor, mask: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> GaussianExpert:
        """Gaussian expert on ``z`` from this modality's observed entries."""
        return self.encoder(self.encoder_input(values, mask), mask, covariates)

    # ------------------------------------------------------------------ decoder side
    def decode(self, z: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        """Raw parameters ``(..., n_outputs)`` of every head."""
        raw = self.decoder(z, covariates)
        return raw if self.increasing is None else self.increasing(raw)

    def split(self, raw: torch.Tensor) -> Iterator[tuple[LikelihoodHead, torch.Tensor]]:
        """Each head with its slice of the raw decoder output."""
        for h, lo, hi in zip(
            self.heads, self.output_bounds[:-1], self.output_bounds[1:], strict=True
        ):
            yield h, raw[..., lo:hi]

    def log_prob(self, raw: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``sum`` over observed entries of ``log p(x | z)``; shape ``raw.shape[:-1]``."""
        total = raw.new_zeros(raw.shape[:-1])
        for head, r in self.split(raw):
            total = total + head.log_prob(r, values[..., head.index], mask[..., head.index])
        return total
