"""Longitudinal twins: a latent linear-Gaussian SDE on irregular times, driven by interventions.

:class:`DynamicTwinModel` models the longitudinal features of a cohort as noisy linear
read-outs of a continuous-time latent state::

    z(t_first) ~ N(m0 + W x, P0)                      initial state (x: covariate context)
    dz = (A z + B u(t) + b) dt + L dW                 latent SDE, u: intervention exposure
    g(x_f(t)) = mu_f + sd_f (H z(t) + c + eps)_f      emission, eps ~ N(0, diag R)

``u(t)`` has one column per agent, built from the cohort's interventions
(start/stop/dose/interval) by :mod:`twin.dynamics.exposure`; ``g`` is a per-feature
transform (identity, log, log1p) and ``mu``, ``sd`` standardise it. Over any gap the
transition is exact (Van Loan), so filtering, smoothing, forecasting and the
likelihood are exact. The individual's own level, trend and sensitivity are part of
the state: coordinates with long decay times act as patient-specific random effects
whose spread is the initial covariance ``P0``.

Why this design:

* exact inference makes training a plain maximisation of the marginal likelihood
  (no variational gap, no sampling), and makes :meth:`DynamicTwins.update` the same
  product-of-experts step as instantiation, so sequential updating equals
  re-filtering the whole record;
* a stable drift keeps long-horizon forecasts bounded and their uncertainty finite;
* the emission transform keeps positivity and skewness (lesion sizes) while the
  latent model stays Gaussian;
* the nonlinear option (``dynamics="neural"``, an MLP drift residual) keeps the same
  interface with assumed-density filtering (see :mod:`twin.model.state_filter`).

Examples
--------
>>> model = DynamicTwinModel(cohort.schema, ["lesion"], features={"lesion": ["diameter"]},
...                          transforms={"diameter": "log1p"}, latent_dim=3)  # doctest: +SKIP
>>> model.fit(train, seed=0)                                                   # doctest: +SKIP
>>> twins = model.instantiate(test)                                            # doctest: +SKIP
>>> fc = twins.forecast([30, 60, 90], relative_to="last")                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from twin.cohort import Cohort, CohortSchema, FeatureSchema, ModalitySchema
from twin.dynamics import exposure_from_table
from twin.model.context_encoding import ContextEncoding
from twin.model.dynamic_data import (
    Sequences,
    extract_observations,
    intervention_event_times,
    pack_steps,
)
from twin.model.dynamic_module import DynamicModule, build_dynamics, default_timescales
from twin.model.dynamic_training import (
    DynamicTrainingConfig,
    DynamicTrainingHistory,
    train_dynamic,
)
from twin.model.effect_priors import (
    EffectPrior,
    agent_effects,
    effect_log_prior,
    parse_effect_priors,
)
from twin.model.emission import GaussianEmission
from twin.model.feature_transform import FeatureTransform, transform_offset
from twin.model.initial_state import InitialStatePrior
from twin.model.state_filter import filter_states
from twin.model.threads import limited_threads, resolve_device, seeded

if TYPE_CHECKING:  # the twins layer sits above the model layer
    from twin.dynamic_twins import DynamicTwins

__all__ = ["DynamicTwinModel"]

#: Largest input matrix (latent_dim x agents entries) whose exact posterior is computed
#: after training (one backward pass per entry).
MAX_INPUT_POSTERIOR = 512
#: More agents than this taken from the cohort by default gets a hint to choose them.
MANY_AGENTS = 32

#: Keys of a per-agent exposure description (``agent_exposure``).
EXPOSURE_KEYS = ("kernel", "half_life", "duration", "delay")


def _select_features(
    schema: CohortSchema,
    modalities: Sequence[str] | None,
    features: Mapping[str, Sequence[str]] | Sequence[str] | None,
) -> list[tuple[str, str]]:
    """``(modality, feature)`` pairs to model: continuous features of longitudinal modalities."""
    longi = [m.name for m in schema if m.longitudinal]
    if modalities is None:
        modalities = list(features) if isinstance(features, Mapping) else longi
    for m in modalities:
        if m not in schema:
            raise KeyError(f"schema has no modality {m!r}; modalities: {schema.names}")
        if not schema[m].longitudinal:
            raise ValueError(
                f"modality {m!r} is static; the dynamic model reads longitudinal modalities {longi}"
            )
    pairs: list[tuple[str, str]] = []
    if features is None:
        for m in modalities:
            pairs += [(m, f.name) for f in schema[m].features if f.type == "continuous"]
    elif isinstance(features, Mapping):
        for m, names in features.items():
            if m not in modalities:
                raise KeyError(f"features given for modality {m!r}, which is not modelled")
            for n in names:
                schema[m].feature(n)  # KeyError with the modality named
                pairs.append((m, str(n)))
    else:
        for n in features:
            hits = [m for m in modalities if n in schema[m].feature_names]
            if not hits:
                raise KeyError(f"no modelled modality has a feature {n!r}")
            pairs.append((hits[0], str(n)))
    for m, n in pairs:
        ftype = schema[m].feature(n).type
        if ftype != "continuous":
            raise ValueError(
                f"feature {n!r} of {m!r} is {ftype}; the linear-Gaussian emission models "
                "continuous features only"
            )
    if not pairs:
        raise ValueError("no continuous longitudinal feature to model")
    if len(set(pairs)) != len(pairs):
        raise ValueError("a feature is listed twice")
    return pairs


def _display_names(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Feature names, prefixed ``modality:`` only where two modalities share a name."""
    counts = pd.Series([f for _, f in pairs]).value_counts()
    return [f if counts[f] == 1 else f"{m}:{f}" for m, f in pairs]


def _restrict(
    schema: CohortSchema, pairs: Sequence[tuple[str, str]], covariates: Sequence[str]
) -> CohortSchema:
    mods = []
    for m in dict.fromkeys(m for m, _ in pairs):
        feats = tuple(schema[m].feature(f) for mm, f in pairs if mm == m)
        mods.append(ModalitySchema(m, feats, longitudinal=True))
    return CohortSchema(tuple(mods), tuple(covariates))


def agent_display_names(interventions: pd.DataFrame, agents: Sequence[str]) -> dict[str, str]:
    """The first non-empty ``display`` of each agent code in an intervention table."""
    shown = interventions.loc[interventions["display"].astype(str) != "", ["agent", "display"]]
    first = shown.drop_duplicates("agent").set_index("agent")["display"]
    return {a: str(first[a]) for a in agents if a in first.index}


class DynamicTwinModel:
    """Population model of longitudinal trajectories under interventions.

    Parameters
    ----------
    schema
        Schema of the training cohort (``cohort.schema``).
    modalities
        Longitudinal modalities to model (default: all; or those keyed in ``features``).
    features
        Features to model: ``{modality: [names]}`` or a list of names (default: every
        continuous feature of the modalities). Other features are ignored.
    latent_dim
        Dimension ``D`` of the latent state.
    agents
        Intervention agents that drive the state (exposure columns). None: every
        agent in the training cohort's interventions; ``[]``: none.
    transforms
        ``{feature: "identity" | "log" | "log1p" | "log+C"}`` applied before
        standardisation (e.g. ``"log+10"``, i.e. ``log(x + 10 mm)``, for lesion
        diameters); see :mod:`twin.model.feature_transform`.
    dynamics
        ``"linear"`` (exact; default) or ``"neural"`` (linear drift plus an MLP
        residual; assumed-density filtering).
    prior_effects
        Mechanistic priors on agent effects, see :mod:`twin.model.effect_priors`.
    agent_exposure
        Per agent ``{"kernel": "step"|"bolus", "half_life": days, "duration": days,
        "delay": days}``: how its recorded interventions become an exposure curve
        (default: a step of height ``dose`` while active). ``delay`` shifts the
        exposure later (an onset dead time); it applies to scenarios too.
    covariates
        Covariates (numeric or text) whose encoding shifts the initial-state mean.
    static_model
        Optional fitted static :class:`~twin.TwinModel` (anything whose
        ``instantiate(cohort)`` returns twins with ``loc (N, d)`` and ``covariance
        (N, d, d)``): its posterior enters the initial-state prior through a learned
        linear map, with its uncertainty propagated. Not saved with this model:
        pass it again to :meth:`load`.
    timescales
        ``(shortest, longest)`` starting decay times (days) of the latent
        coordinates; default from the data (median visit gap, 4 x longest follow-up).
    time_unit
        Internal time unit in days (default: the shortest starting decay time). The
        dynamics are parametrised per unit, so that rates, rotations and drives are
        of order one whatever the follow-up (weeks for lesions, decades for EHRs)
        and one learning rate suits them all; results are reported in days.
    insert_events
        Add intervention start/stop times as unobserved steps, so step exposures are
        exactly piecewise constant between steps (default True).
    standardize
        Standardise each transformed feature with its training mean and sd.
    neural
        Options of the neural dynamics: ``hidden``, ``layers``, ``max_step`` (days),
        ``n_samples`` (Monte Carlo draws per filter step), ``epochs`` (of the
        neural stage after the exact linear fit), ``lr``.
    effect_prior_sd
        Sd of a zero-mean Gaussian prior on every entry of the input matrix ``B``
        (standardised feature units per internal time unit): it keeps the effects of
        rarely used agents finite. A mapping gives one sd per agent (key ``"*"``: the
        default, else 1), e.g. a wide prior for a common "on treatment" agent and
        tight ones for arm-specific deviations (a hierarchical effect). None: no
        such prior.
    device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
    dtype
        Parameter and filter dtype (float64 recommended for filtering).
    num_threads
        Torch CPU threads while fitting, filtering and forecasting (None: leave the
        setting alone). The per-step operations are tiny: one thread is fastest,
        and several threads on a busy machine can be an order of magnitude slower.
    structure
        Starting point of training. ``"generic"``: latent coordinates with decay
        times spread over the data's time scales and a random emission.
        ``"trend"``: the first ``2 F`` coordinates start as one level-and-trend
        block per feature (a patient-specific level and slope, see
        :func:`~twin.model.dynamic_module.build_dynamics`; needs ``latent_dim >= 2 F``),
        the rest generic. Either way every parameter is then learned.
    """

    def __init__(
        self,
        schema: CohortSchema,
        modalities: Sequence[str] | None = None,
        *,
        features: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        latent_dim: int = 4,
        agents: Sequence[str] | None = None,
        transforms: Mapping[str, str] | None = None,
        dynamics: str = "linear",
        prior_effects: Mapping[str, Any] | None = None,
        agent_exposure: Mapping[str, Mapping[str, Any]] | None = None,
        covariates: Sequence[str] = (),
        static_model: Any = None,
        timescales: tuple[float, float] | None = None,
        time_unit: float | None = None,
        insert_events: bool = True,
        standardize: bool = True,
        neural: Mapping[str, Any] | None = None,
        effect_prior_sd: float | Mapping[str, float] | None = 1.0,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float64,
        num_threads: int | None = 1,
        structure: str = "generic",
    ) -> None:
        if dynamics not in ("linear", "neural"):
            raise ValueError(f"dynamics must be 'linear' or 'neural', got {dynamics!r}")
        if int(latent_dim) < 1:
            raise ValueError("latent_dim must be >= 1")
        self.features = _select_features(schema, modalities, features)
        self.feature_names = _display_names(self.features)
        missing_cov = [c for c in covariates if schema.covariates and c not in schema.covariates]
        if missing_cov:
            raise KeyError(
                f"covariates {missing_cov} are not in the schema ({list(schema.covariates)})"
            )
        self.covariates = list(covariates)
        self.schema = _restrict(schema, self.features, self.covariates)
        self.latent_dim = int(latent_dim)
        self.agents = None if agents is None else [str(a) for a in agents]
        self.transform_spec = {str(k): str(v) for k, v in (transforms or {}).items()}
        for k, v in self.transform_spec.items():
            if k not in self.feature_names:
                raise KeyError(
                    f"transform given for {k!r}, not a modelled feature {self.feature_names}"
                )
            transform_offset(v)  # ValueError naming the accepted transforms
        self.dynamics_kind = dynamics
        self.prior_spec = {str(a): v for a, v in (prior_effects or {}).items()}
        self.agent_exposure = {str(a): dict(v) for a, v in (agent_exposure or {}).items()}
        for a, cfg in self.agent_exposure.items():
            bad = set(cfg) - set(EXPOSURE_KEYS)
            if bad:
                raise KeyError(
                    f"agent_exposure[{a!r}]: unknown keys {sorted(bad)}; allowed {EXPOSURE_KEYS}"
                )
        self.static_model = static_model
        self.timescales = (
            None if timescales is None else (float(timescales[0]), float(timescales[1]))
        )
        self.time_unit = None if time_unit is None else float(time_unit)
        if self.time_unit is not None and not self.time_unit > 0:
            raise ValueError("time_unit must be a positive number of days")
        self.insert_events = bool(insert_events)
        self.standardize = bool(standardize)
        self.neural = dict(neural or {})
        if isinstance(effect_prior_sd, Mapping):
            self.effect_prior_sd = {str(k): float(v) for k, v in effect_prior_sd.items()}
            values = list(self.effect_prior_sd.values())
        else:
            self.effect_prior_sd = None if effect_prior_sd is None else float(effect_prior_sd)
            values = [] if effect_prior_sd is None else [self.effect_prior_sd]
        if any(not v > 0 for v in values):
            raise ValueError("effect_prior_sd must be positive (or None)")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.num_threads = num_threads
        if structure not in ("generic", "trend"):
            raise ValueError(f"structure must be 'generic' or 'trend', got {structure!r}")
        if structure == "trend" and self.latent_dim < 2 * len(self.features):
            raise ValueError(
                f"structure='trend' needs latent_dim >= 2 x {len(self.features)} features"
            )
        self.structure = structure
        self.transform: FeatureTransform | None = None
        self.context: ContextEncoding | None = None
        self.static_dim = 0
        self.module: DynamicModule | None = None
        self.priors: list[EffectPrior] = []
        self.training_config: DynamicTrainingConfig | None = None
        self.history: DynamicTrainingHistory | None = None
        #: per-feature factor on the forecast sd (:meth:`calibrate_forecast`); None: 1
        self.forecast_scale: np.ndarray | None = None
        #: display name of each modelled agent code, from the training cohort's interventions
        self.agent_names: dict[str, str] = {}
        if self.agents is not None:
            self.priors = parse_effect_priors(self.prior_spec, self.agents, self.feature_names)

    # ------------------------------------------------------------------ structure
    @property
    def is_fitted(self) -> bool:
        return self.module is not None

    def _require_fitted(self) -> DynamicModule:
        if self.module is None:
            raise RuntimeError("the model is not fitted; call fit(cohort) or load a saved model")
        return self.module

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def feature_schemas(self) -> dict[str, FeatureSchema]:
        """The schema entry (unit, code, display, ...) of each modelled feature, by name."""
        return {
            name: self.schema[m].feature(f)
            for (m, f), name in zip(self.features, self.feature_names, strict=True)
        }

    @property
    def context_dim(self) -> int:
        return (self.context.width if self.context else 0) + self.static_dim

    def check_cohort(self, cohort: Cohort) -> None:
        """Refuse a cohort whose modelled features or covariates differ from the model's."""
        problems: list[str] = []
        for m in dict.fromkeys(m for m, _ in self.features):
            if m not in cohort.schema:
                problems.append(f"modality {m!r} is missing from the cohort")
            elif not cohort.schema[m].longitudinal:
                problems.append(f"modality {m!r} is static in the cohort")
        if not problems:
            given = cohort.schema
            missing = [
                f"feature {f!r} of {m!r} is missing from the cohort"
                for m, f in self.features
                if f not in given[m].feature_names
            ]
            problems += missing
            if not missing:
                theirs = _restrict(given, self.features, self.covariates)
                problems += self.schema.diff(theirs) if theirs != self.schema else []
        absent = [c for c in self.covariates if c not in cohort.covariate_names]
        problems += [f"covariate {c!r} is missing from the cohort" for c in absent]
        if problems:
            raise ValueError(
                "the cohort does not match the model's schema (model vs cohort): "
                + "; ".join(problems[:8])
            )

    def conformed(self, cohort: Cohort) -> Cohort:
        """``cohort`` laid out on the model's features (see :meth:`twin.Cohort.conform`).

        A cohort that already matches is returned as is.  Otherwise features the
        individuals never had are added as unobserved, features named differently
        by a single export (same code and unit) are matched, and categorical values
        are recoded by label (labels the model does not know are left unobserved);
        other modalities (e.g. a static model's) are kept.  Readings of a modelled
        feature in another unit, and missing covariates, are refused.
        """
        try:
            self.check_cohort(cohort)
            return cohort
        except ValueError as exc:
            mismatch = exc
        given = cohort.schema
        others = tuple(m for m in given if m.name not in self.schema)
        target = CohortSchema((*self.schema.modalities, *others), given.covariates)
        out = cohort.conform(target, warn=False)
        conflicts = out.attr_json("twin_conform_report")["unit_conflicts"]
        if conflicts:  # readings of a modelled feature in another unit: never drop them quietly
            named = "; ".join(
                f"{f!r} in {u!r}, the model's unit is {v!r}" for _, f, u, v in conflicts
            )
            raise ValueError(f"{mismatch} ({named}; convert them first)") from None
        self.check_cohort(out)
        return out

    # ------------------------------------------------------------------ data
    def _interventions(self, cohort: Cohort) -> pd.DataFrame:
        table = cohort.interventions
        if not self.agents:
            return table.iloc[:0]
        return table[table["agent"].isin(self.agents)].reset_index(drop=True)

    def _delays(self) -> dict[str, float]:
        return {a: float(c.get("delay", 0.0) or 0.0) for a, c in self.agent_exposure.items()}

    def sequences(
        self,
        cohort: Cohort,
        *,
        after: np.ndarray | None = None,
        start: np.ndarray | None = None,
        interventions: pd.DataFrame | None = None,
        events: bool = True,
    ) -> Sequences:
        """The cohort's modelled observations as padded step sequences (standardised).

        Parameters
        ----------
        after
            ``(N,)``: keep only observations strictly after these times.
        start
            ``(N,)``: an unobserved first step at these times (the time of a known
            posterior, for updating and forecasting); NaN: none for that individual
            (its first observation is the first step).
        interventions
            Intervention table for the event times (default: the cohort's).
        events
            Add intervention start/stop times between the first and last step.
        """
        if self.transform is None:
            raise RuntimeError("the model is not fitted")
        times, values, mask = extract_observations(cohort, self.features)
        y = self.transform.encode(values, mask)
        valid = mask.any(-1)
        if after is not None:
            valid &= times > np.asarray(after, dtype=np.float64)[:, None]
        obs_t = np.where(valid, times, np.nan)
        N = len(cohort)
        with np.errstate(all="ignore"):
            last = np.where(valid.any(1), np.nanmax(np.where(valid, obs_t, -np.inf), 1), np.nan)
            first = np.where(valid.any(1), np.nanmin(np.where(valid, obs_t, np.inf), 1), np.nan)
        cols_t, cols_valid = [obs_t], [valid]
        cols_y, cols_m = [y], [mask & valid[..., None]]
        F = self.n_features
        if start is not None:
            s = np.asarray(start, dtype=np.float64)[:, None]
            cols_t.insert(0, s)
            cols_valid.insert(0, np.isfinite(s))
            cols_y.insert(0, np.full((N, 1, F), np.nan))
            cols_m.insert(0, np.zeros((N, 1, F), dtype=bool))
            lower = np.where(np.isfinite(s[:, 0]), s[:, 0], first)
        else:
            lower = first
        if events and self.insert_events and self.agents:
            table = self._interventions(cohort) if interventions is None else interventions
            ev = intervention_event_times(
                table, list(cohort.individuals), self.agents, self._delays()
            )
            with np.errstate(invalid="ignore"):
                ev_valid = (ev > lower[:, None]) & (ev < last[:, None])
            cols_t.append(ev)
            cols_valid.append(ev_valid)
            cols_y.append(np.full((N, ev.shape[1], F), np.nan))
            cols_m.append(np.zeros((N, ev.shape[1], F), dtype=bool))
        all_t = np.concatenate(cols_t, axis=1)
        order, n_steps, packed = pack_steps(all_t, np.concatenate(cols_valid, axis=1))
        yy = np.take_along_axis(np.concatenate(cols_y, axis=1), order[..., None], axis=1)
        mm = np.take_along_axis(np.concatenate(cols_m, axis=1), order[..., None], axis=1)
        real = np.arange(packed.shape[1])[None, :] < n_steps[:, None]
        mm &= real[..., None]
        return Sequences(packed, np.where(mm, yy, np.nan), mm, n_steps)

    def exposure(
        self, table: pd.DataFrame, individuals: Sequence[str], times: np.ndarray | torch.Tensor
    ) -> torch.Tensor | None:
        """Exposure ``(N, T, P)`` of the model's agents on per-individual grids ``(N, T)``.

        Rows of ``table`` follow the Cohort intervention layout; each agent's
        ``agent_exposure`` settings (kernel, half-life, duration, delay) apply.
        """
        if not self.agents:
            return None
        t = torch.as_tensor(
            np.asarray(times, dtype=np.float64), dtype=self.dtype, device=self.device
        )
        delays = self._delays()
        if len(table) and any(delays.values()):
            table = table.copy()
            shift = table["agent"].map(lambda a: delays.get(a, 0.0)).astype(np.float64)
            table["start_t"] = table["start_t"].astype(np.float64) + shift
            table["end_t"] = table["end_t"].astype(np.float64) + shift
        cfg = self.agent_exposure
        with warnings.catch_warnings():
            # pandas copy-on-write hands exposure_from_table read-only index arrays
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return exposure_from_table(
                table,
                list(individuals),
                self.agents,
                t,
                kernels={a: c["kernel"] for a, c in cfg.items() if "kernel" in c},
                half_lives={a: c["half_life"] for a, c in cfg.items() if "half_life" in c},
                durations={a: c["duration"] for a, c in cfg.items() if "duration" in c},
            )

    def initial_prior(self, cohort: Cohort) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial-state prior mean ``(N, D)`` and covariance ``(N, D, D)`` of the cohort's individuals."""
        module = self._require_fitted()
        x, sx = self._context(cohort)
        with torch.no_grad():
            m0, P0 = module.initial(x, sx, n=len(cohort))
        return m0.detach().clone(), P0.detach().clone()

    def _context(self, cohort: Cohort) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        parts, covs = [], []
        kw = {"dtype": self.dtype, "device": self.device}
        if self.context is not None and self.context.width:
            x = self.context.transform(cohort.covariates)
            parts.append(torch.as_tensor(x, **kw))
            covs.append(torch.zeros(len(cohort), x.shape[1], x.shape[1], **kw))
        if self.static_dim:
            if self.static_model is None:
                raise RuntimeError(
                    "this model was trained with a static model; pass static_model= to load()"
                )
            st = self.static_model.instantiate(cohort)
            ids = [str(i) for i in getattr(st, "individuals", cohort.individuals)]
            if ids != [str(i) for i in cohort.individuals]:
                raise ValueError("the static model's twins are not in the cohort's order")
            parts.append(torch.as_tensor(st.loc, **kw))
            covs.append(torch.as_tensor(st.covariance, **kw))
        if not parts:
            return None, None
        x = torch.cat(parts, dim=1)
        C = x.shape[1]
        sx = torch.zeros(len(cohort), C, C, **kw)
        o = 0
        for c in covs:
            w = c.shape[-1]
            sx[:, o : o + w, o : o + w] = c
            o += w
        return x, sx

    # ------------------------------------------------------------------ training
    def internal_times(self, times: np.ndarray) -> torch.Tensor:
        """Times in days ``->`` the dynamics' internal unit, as a tensor on the model's device."""
        unit = self.time_unit or 1.0
        return torch.as_tensor(
            np.asarray(times, dtype=np.float64) / unit, dtype=self.dtype, device=self.device
        )

    def _build_module(self, timescales: tuple[float, float]) -> DynamicModule:
        P = len(self.agents or [])
        unit = self.time_unit or 1.0
        neural = dict(self.neural)
        if neural.get("max_step"):
            neural["max_step"] = float(neural["max_step"]) / unit
        dyn = build_dynamics(
            self.dynamics_kind,
            self.latent_dim,
            P,
            (timescales[0] / unit, timescales[1] / unit),
            dtype=self.dtype,
            device=self.device,
            neural=neural,
            trend_blocks=self.n_features if self.structure == "trend" else 0,
        )
        emission = GaussianEmission(
            self.n_features, self.latent_dim, dtype=self.dtype, device=self.device
        )
        if self.structure == "trend":
            with torch.no_grad():
                emission.H.mul_(0.1)
                for f in range(self.n_features):
                    emission.H[f, 2 * f] = 1.0
        initial = InitialStatePrior(
            self.latent_dim, self.context_dim, dtype=self.dtype, device=self.device
        )
        return DynamicModule(dyn, emission, initial)

    def _seeded(self, seed: int) -> contextlib.AbstractContextManager[None]:
        return seeded(seed, self.device)

    def threads(self):
        """Context manager limiting torch's CPU threads to :attr:`num_threads`."""
        return limited_threads(self.num_threads)

    def fit(
        self,
        cohort: Cohort,
        *,
        epochs: int = 400,
        lr: float = 0.03,
        batch_size: int | None = None,
        validation: float = 0.15,
        patience: int = 40,
        seed: int = 0,
        progress: bool = True,
    ) -> DynamicTwinModel:
        """Fit all parameters by maximising the exact marginal likelihood (MAP with effect priors).

        Parameters
        ----------
        cohort
            Training cohort (individuals with their longitudinal observations and
            interventions).
        epochs, lr, batch_size, validation, patience, seed
            See :class:`~twin.model.dynamic_training.DynamicTrainingConfig`.
        progress
            Show a progress bar.

        Returns
        -------
        DynamicTwinModel
            ``self``, fitted.
        """
        with self.threads():
            return self._fit(cohort, epochs, lr, batch_size, validation, patience, seed, progress)

    def _fit(self, cohort, epochs, lr, batch_size, validation, patience, seed, progress):
        self.check_cohort(cohort)
        config = DynamicTrainingConfig(epochs, lr, batch_size, validation, patience, seed)
        if self.agents is None:
            agents = sorted(set(cohort.interventions["agent"].astype(str)))
            self.agents = [a for a in agents if a]
            if len(self.agents) > MANY_AGENTS:
                warnings.warn(
                    f"{len(self.agents)} intervention agents taken from the training cohort "
                    f"(every distinct agent), each with latent_dim ({self.latent_dim}) effects "
                    "to learn; pass agents=[...] to model only those of interest",
                    stacklevel=3,
                )
        self.priors = parse_effect_priors(self.prior_spec, self.agents, self.feature_names)
        self.agent_names = agent_display_names(cohort.interventions, self.agents)
        _, values, mask = extract_observations(cohort, self.features)
        if not mask.any():
            raise ValueError("the training cohort has no observation of the modelled features")
        self.transform = FeatureTransform.fit(
            self.feature_names, values, mask, self.transform_spec, self.standardize
        )
        self.context = (
            ContextEncoding.fit(cohort.covariates, self.covariates) if self.covariates else None
        )
        if self.static_model is not None:
            self.static_dim = int(getattr(self.static_model, "latent_dim", 0))
            if self.static_dim < 1:
                raise ValueError("static_model needs a positive latent_dim")
        seq = self.sequences(cohort)
        timescales = self.timescales or default_timescales(seq.times, seq.n_steps)
        self.timescales = timescales
        if self.time_unit is None:
            self.time_unit = float(timescales[0])
        with self._seeded(seed):
            self.module = self._build_module(timescales)
        data = self._tensors(cohort, seq)
        module = self.module
        history = DynamicTrainingHistory()

        def make_loglik(dynamics: torch.nn.Module, n_samples: int):
            def batch_log_lik(idx: np.ndarray) -> tuple[torch.Tensor, int]:
                T = max(1, int(seq.n_steps[idx].max()))
                sl = torch.as_tensor(idx, device=self.device)
                x = None if data["x"] is None else data["x"][sl]
                sx = None if data["sx"] is None else data["sx"][sl]
                m0, P0 = module.initial(x, sx, n=len(idx))
                u = None if data["u"] is None else data["u"][sl, :T]
                res = filter_states(
                    dynamics,
                    module.emission,
                    data["y"][sl, :T],
                    data["t"][sl, :T],
                    data["mask"][sl, :T],
                    m0,
                    P0,
                    u,
                    n_samples=n_samples,
                )
                return res.log_likelihood.sum(), int(seq.mask[idx].sum())

            return batch_log_lik

        def log_prior() -> torch.Tensor:
            total = torch.zeros((), dtype=self.dtype, device=self.device)
            sd_b = self._input_prior_sd()
            if sd_b is not None:
                total = total - 0.5 * (module.linear.B**2 / sd_b**2).sum()
            if self.priors:
                sd = torch.as_tensor(self.transform.sd, dtype=self.dtype, device=self.device)
                total = total + effect_log_prior(
                    self.priors,
                    module.dynamics,
                    module.emission.H,
                    sd,
                    self.agents,
                    self.feature_names,
                    self.time_unit,
                )
            return total

        with self._seeded(seed + 1):
            linear_params = [
                p for n, p in module.named_parameters() if not n.startswith("dynamics.residual")
            ]
            train_dynamic(
                module,
                make_loglik(module.linear, 0),
                log_prior,
                len(cohort),
                config,
                history=history,
                stage="linear",
                progress=progress,
                parameters=linear_params,
            )
            if self.dynamics_kind == "neural":
                neural_cfg = DynamicTrainingConfig(
                    epochs,
                    float(self.neural.get("lr", lr / 3)),
                    batch_size,
                    validation,
                    patience,
                    seed,
                )
                train_dynamic(
                    module,
                    make_loglik(module.dynamics, int(self.neural.get("n_samples", 64))),
                    log_prior,
                    len(cohort),
                    neural_cfg,
                    history=history,
                    stage="neural",
                    epochs=int(self.neural.get("epochs", 100)),
                    progress=progress,
                )
        k = module.linear.B.numel()
        if 0 < k <= MAX_INPUT_POSTERIOR:
            module.B_cov.copy_(
                self._input_posterior_cov(make_loglik(module.linear, 0), log_prior, len(cohort))
            )
        elif k:
            warnings.warn(
                f"the input matrix has {k} entries (> {MAX_INPUT_POSTERIOR}); its posterior "
                "covariance is not computed and simulations use its point estimate",
                stacklevel=3,
            )
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.training_config = config
        self.history = history
        self.forecast_scale = None  # a refit model needs calibrating again
        return self

    def calibrate_forecast(
        self, cohort: Cohort, *, level: float = 0.9, min_history: int = 2
    ) -> pd.DataFrame:
        """Rescale forecast intervals so they cover held-out readings at ``level``.

        For every feature, each individual of ``cohort`` with more than
        ``min_history`` readings has its last reading forecast from the earlier ones;
        the factor that makes the central ``level`` interval cover those readings at
        the nominal rate then multiplies the sd of every later forecast of a new
        measurement (:meth:`DynamicTwins.forecast` with ``noise=True``; the means,
        filtering, updating and simulation are unchanged).  See
        :mod:`twin.model.forecast_calibration`.

        Returns
        -------
        pandas.DataFrame
            Per feature: individuals used, factor, and the coverage of the held-out
            readings before and after.
        """
        from twin.model.forecast_calibration import forecast_scale_factors

        self._require_fitted()
        table = forecast_scale_factors(self, cohort, level=level, min_history=min_history)
        self.forecast_scale = table["factor"].to_numpy(dtype=float)
        return table

    def _input_prior_sd(self) -> torch.Tensor | None:
        """Prior sd of each agent's column of ``B`` ``(P,)`` (None: no prior)."""
        agents = self.agents or []
        if self.effect_prior_sd is None or not agents:
            return None
        if isinstance(self.effect_prior_sd, dict):
            unknown = sorted(set(self.effect_prior_sd) - set(agents) - {"*"})
            if unknown:
                raise KeyError(f"effect_prior_sd given for unknown agents {unknown}")
            default = self.effect_prior_sd.get("*", 1.0)
            sd = [self.effect_prior_sd.get(a, default) for a in agents]
        else:
            sd = [self.effect_prior_sd] * len(agents)
        return torch.tensor(sd, dtype=self.dtype, device=self.device)

    def _input_posterior_cov(self, batch_log_lik, log_prior, n: int) -> torch.Tensor:
        """Posterior covariance of ``vec(B)`` given the other parameters (exact Laplace).

        The filter's covariances do not depend on ``B`` and its means are linear in
        ``B``, so the log-likelihood (and the Gaussian effect priors) are quadratic in
        ``B``: its conditional posterior is exactly Gaussian, with precision minus the
        Hessian, computed here by double back-propagation. Directions the data do
        not inform keep the prior variance ``effect_prior_sd**2`` (or a large one).
        """
        B = self._require_fitted().linear.B
        k = B.numel()
        hess = B.new_zeros((k, k))
        with torch.enable_grad():
            for i in range(0, n, 256):
                idx = np.arange(i, min(n, i + 256))
                ll, _ = batch_log_lik(idx)
                if i == 0:
                    ll = ll + log_prior()
                (g,) = torch.autograd.grad(ll, B, create_graph=True)
                hess = hess + self._jacobian_rows(g.reshape(-1), B).detach()
        prec = -0.5 * (hess + hess.mT)
        sd_b = self._input_prior_sd()
        floor = 1.0 / (float(sd_b.max()) if sd_b is not None else 1e3) ** 2
        evals, evecs = torch.linalg.eigh(prec)
        evals = evals.clamp_min(floor)
        return (evecs / evals) @ evecs.mT

    @staticmethod
    def _jacobian_rows(g: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """``d g / d vec(B)`` ``(k, k)`` for a gradient ``g`` built with ``create_graph``:
        all rows in one vectorised backward pass (``is_grads_batched``), row by row
        where an operation of the graph has no batching rule."""
        k = g.numel()
        eye = torch.eye(k, dtype=g.dtype, device=g.device)
        try:
            (rows,) = torch.autograd.grad(g, B, eye, retain_graph=True, is_grads_batched=True)
            return rows.reshape(k, k)
        except RuntimeError:
            return torch.stack(
                [torch.autograd.grad(g[j], B, retain_graph=True)[0].reshape(-1) for j in range(k)]
            )

    def _tensors(self, cohort: Cohort, seq: Sequences) -> dict[str, torch.Tensor | None]:
        kw = {"dtype": self.dtype, "device": self.device}
        x, sx = self._context(cohort)
        u = self.exposure(self._interventions(cohort), cohort.individuals, seq.times)
        return {
            "t": self.internal_times(seq.times),
            "y": torch.as_tensor(np.nan_to_num(seq.y), **kw),
            "mask": torch.as_tensor(seq.mask, device=self.device),
            "u": u,
            "x": x,
            "sx": sx,
        }

    # ------------------------------------------------------------------ inference
    def filter(self, cohort: Cohort, seq: Sequences | None = None):
        """Exact filter of each individual's record from the initial prior.

        Returns the :class:`~twin.dynamics.KalmanResult` and the sequences it ran on.
        ``cohort`` is first laid out on the model's features (:meth:`conformed`).
        """
        module = self._require_fitted()
        cohort = self.conformed(cohort)
        seq = seq if seq is not None else self.sequences(cohort)
        data = self._tensors(cohort, seq)
        with torch.no_grad(), self.threads():
            m0, P0 = module.initial(data["x"], data["sx"], n=len(cohort))
            res = filter_states(
                module.dynamics,
                module.emission,
                data["y"],
                data["t"],
                data["mask"],
                m0,
                P0,
                data["u"],
                n_samples=int(self.neural.get("n_samples", 256)),
            )
        return res, seq, (m0, P0)

    def log_likelihood(self, cohort: Cohort) -> pd.Series:
        """Marginal log-likelihood of each individual's observations (exact for linear dynamics)."""
        res, _, _ = self.filter(cohort)
        return pd.Series(
            res.log_likelihood.double().cpu().numpy(),
            index=pd.Index(cohort.individuals, name="individual"),
        )

    def instantiate(self, cohort: Cohort) -> DynamicTwins:
        """Twins of the cohort's individuals: the filtered state at each one's last observation.

        The posterior of each individual's latent state given all of its modelled
        observations (exact Kalman filter from the initial-state prior, with its
        recorded interventions as inputs). Individuals without observations keep
        the prior, at time 0.  The cohort may come from one individual's own export:
        it is laid out on the model's features first (:meth:`conformed`).
        """
        from twin.dynamic_twins import DynamicTwins  # the one upward reference: the factory

        cohort = self.conformed(cohort)
        res, seq, (m0, P0) = self.filter(cohort)
        history = self.sequences(cohort, events=False)
        observed = seq.mask.any(-1).any(-1)
        time = np.where(observed, seq.times[:, -1], 0.0)
        prior_time = history.first_observed_time()
        prior_time = np.where(np.isfinite(prior_time), prior_time, 0.0)
        return DynamicTwins(
            self,
            individuals=np.asarray(cohort.individuals),
            time=time,
            mean=res.filtered_mean[:, -1].detach(),
            cov=res.filtered_cov[:, -1].detach(),
            history=history,
            prior_mean=m0,
            prior_cov=P0,
            prior_time=prior_time,
            interventions=self._interventions(cohort),
            reference_time=cohort.reference_time.to_numpy(),
            death_time=cohort.death_t.to_numpy(),
        )

    # ------------------------------------------------------------------ effects
    def effects(self, horizons: Sequence[float | None] = (30.0, 90.0, 365.0, None)) -> pd.DataFrame:
        """Learned effect of a constant unit exposure of each agent on each feature.

        One row per agent (code and ``agent_name``), feature and horizon (days after the
        exposure starts; None: steady state): ``effect`` in the feature's transformed
        units (data units for untransformed features; a log-ratio for ``log``/``log1p``). See
        :mod:`twin.model.effect_priors`; the prior (if any) is listed next to it.
        """
        module = self._require_fitted()
        rows = []
        sd = torch.as_tensor(self.transform.sd, dtype=self.dtype, device=self.device)
        prior = {(p.agent, p.feature, p.at): p for p in self.priors}
        with torch.no_grad():
            for h in horizons:
                eff = (
                    agent_effects(module.dynamics, module.emission.H, sd, h, self.time_unit or 1.0)
                    .cpu()
                    .numpy()
                )
                for j, a in enumerate(self.agents or []):
                    for f, name in enumerate(self.feature_names):
                        p = prior.get((a, name, None if h is None else float(h)))
                        rows.append(
                            {
                                "agent": a,
                                "agent_name": self.agent_names.get(a, ""),
                                "feature": name,
                                "horizon": np.inf if h is None else float(h),
                                "effect": float(eff[f, j]),
                                "transform": self.transform.transforms[f],
                                "prior_mean": p.mean if p else np.nan,
                                "prior_sd": p.sd if p else np.nan,
                            }
                        )
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ fixed parameters
    @classmethod
    def from_matrices(
        cls,
        schema: CohortSchema,
        *,
        A: Any,
        H: Any,
        R: Any,
        m0: Any,
        P0: Any,
        Qc: Any,
        B: Any = None,
        b: Any = None,
        c: Any = None,
        agents: Sequence[str] = (),
        modalities: Sequence[str] | None = None,
        features: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        transforms: Mapping[str, str] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> DynamicTwinModel:
        """A ready-to-use model with given matrices (no training, no standardisation).

        ``dz = (A z + B u + b) dt + dW`` with ``Cov dW = Qc dt``; ``y = H z + c + N(0, diag R)``
        on the (transformed, unstandardised) feature scale; ``z(t_first) ~ N(m0, P0)``.
        Use it for mechanistic models, or to check filtering against a reference.
        """
        from twin.dynamics import LinearGaussianDynamics

        kw = {"dtype": dtype}
        A = torch.as_tensor(np.asarray(A, dtype=np.float64), **kw)
        D = A.shape[0]
        model = cls(
            schema,
            modalities,
            features=features,
            latent_dim=D,
            agents=list(agents),
            transforms=transforms,
            standardize=False,
            device=device,
            dtype=dtype,
        )
        F = model.n_features
        model.transform = FeatureTransform(
            model.feature_names,
            [model.transform_spec.get(n, "identity") for n in model.feature_names],
            np.zeros(F),
            np.ones(F),
        )
        P = len(model.agents)
        Bm = (
            torch.zeros(D, P, **kw)
            if B is None
            else torch.as_tensor(np.asarray(B, dtype=np.float64), **kw)
        )
        dyn = LinearGaussianDynamics.from_matrices(
            A,
            Bm,
            None if b is None else torch.as_tensor(np.asarray(b, dtype=np.float64), **kw),
            torch.as_tensor(np.asarray(Qc, dtype=np.float64), **kw),
        )
        emission = GaussianEmission(F, D, dtype=dtype)
        initial = InitialStatePrior(D, 0, dtype=dtype)
        with torch.no_grad():
            emission.H.copy_(torch.as_tensor(np.asarray(H, dtype=np.float64), **kw))
            if c is not None:
                emission.c.copy_(torch.as_tensor(np.asarray(c, dtype=np.float64), **kw))
            emission.set_noise(torch.as_tensor(np.asarray(R, dtype=np.float64), **kw))
            initial.set(
                torch.as_tensor(np.asarray(m0, dtype=np.float64), **kw),
                torch.as_tensor(np.asarray(P0, dtype=np.float64), **kw),
            )
        model.module = DynamicModule(dyn, emission, initial).to(model.device)
        for p in model.module.parameters():
            p.requires_grad_(False)
        model.timescales = (1.0, 1.0)
        model.time_unit = 1.0
        return model

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``model.json`` and ``weights.pt`` into the folder ``path`` (atomically, no pickle)."""
        from twin.model.dynamic_persistence import save_dynamic_model

        return save_dynamic_model(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        schema: CohortSchema | None = None,
        static_model: Any = None,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
    ) -> DynamicTwinModel:
        """Read a model written by :meth:`save`; ``schema`` (e.g. ``cohort.schema``) is checked."""
        from twin.model.dynamic_persistence import load_dynamic_model

        return load_dynamic_model(
            path, schema=schema, static_model=static_model, device=device, num_threads=num_threads
        )

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        lines = [
            f"<twin.DynamicTwinModel: {self.dynamics_kind} latent SDE, latent_dim {self.latent_dim}, {state}>"
        ]
        feats = [
            f"{n}"
            + (
                ""
                if self.transform_spec.get(n, "identity") == "identity"
                else f" ({self.transform_spec[n]})"
            )
            for n in self.feature_names
        ]
        lines.append(f"  features: {_first(feats, 12)}")
        if self.forecast_scale is not None:
            factors = [
                f"{n} x{c:.2f}"
                for n, c in zip(self.feature_names, self.forecast_scale, strict=True)
            ]
            lines.append(f"  forecast sd calibrated: {_first(factors, 12)}")
        agents = self.agents
        if agents is None:
            lines.append("  agents: from the training cohort")
        else:
            lines.append(f"  agents: {_first(agents, 6) or 'none'}")
        if self.priors:
            lines.append(f"  effect priors: {len(self.priors)}")
        if self.covariates:
            lines.append(f"  covariates: {', '.join(self.covariates)}")
        if self.module is not None:
            A = self.module.linear.A.detach()
            rates = -torch.linalg.eigvals(A).real
            unit = self.time_unit or 1.0
            tau = sorted((unit / rates.clamp_min(1e-12)).tolist())
            lines.append("  decay times (days): " + ", ".join(f"{t:.3g}" for t in tau))
        if self.history is not None and self.history.train_loss:
            h = self.history
            val = (
                f", val {h.val_loss[h.best_epoch]:.4f}"
                if h.val_loss and h.best_epoch < len(h.val_loss)
                else ""
            )
            lines.append(
                f"  trained {len(h.train_loss)} epochs ({h.seconds:.1f} s), kept epoch {h.best_epoch}: "
                f"NLL/obs train {h.train_loss[h.best_epoch]:.4f}{val}"
            )
        return "\n".join(lines)


def _first(names: Sequence[str], n: int) -> str:
    """The first ``n`` of ``names``, comma-separated, with the total when some are cut."""
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)})" if len(names) > n else "")
