"""Property twins of materials: predict every property of a batch from what is known of it.

:class:`PropertyTwinModel` wraps the static population model (:class:`twin.TwinModel`)
for the materials question "given how this batch was made (and perhaps a few of its
measured properties), what are all its properties, with calibrated intervals?":

* **inputs** are the processing / composition (/ structure) modalities, **outputs**
  the property modalities; a :class:`~twin.materials.ProcessGraph` (given, or the one
  the cohort carries) must allow every input to inform every output;
* the twin is one joint latent model of inputs and outputs, so a prediction from the
  inputs alone and an *update* from inputs plus some measured properties are the same
  operation: the measured properties are observed features of the output modality
  (feature-level masks), the others are imputed;
* predictions are vectorised over candidates: thousands of candidate settings (a
  ``DataFrame``, one row each) are encoded, sampled and summarised in one batched pass
  on the model's device.

Derived inputs (binder, water/cement ratio) are recomputed from their components with
:class:`~twin.materials_twins.derived.DerivedFeatures` whenever candidates are given
as a table.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from twin.cohort import Cohort, CohortSchema
from twin.materials.ages import feature_age
from twin.materials.graph import GRAPH_ATTR, ProcessGraph
from twin.materials_twins.derived import DerivedFeatures, SettingError
from twin.materials_twins.mean_model import PropertyMean
from twin.model import ModalitySpec, TwinModel
from twin.model.data import ObservedData, check_modality
from twin.model.ensemble import member_seed
from twin.model.member_training import MemberJob, fit_members
from twin.model.predictive import split_draws
from twin.twins import DEFAULT_QUANTILES, Twins, check_quantiles, quantile_suffix

__all__ = ["AUTO_REFINE_STEPS", "DEFAULT_SPEC", "DEFAULT_TRAINING", "PropertyTwinModel"]

Inputs = Cohort | pd.DataFrame | Mapping[str, Any]
Observed = pd.DataFrame | Mapping[str, Any] | Sequence[str] | str | None

#: Refinement steps of ``refine_steps="auto"`` when a modality is only partly observed.
AUTO_REFINE_STEPS = 100

#: Network of every modality unless ``specs`` says otherwise: two hidden layers of 256.
DEFAULT_SPEC = ModalitySpec(encoder_hidden=(256, 256), decoder_hidden=(256, 256))

#: Training settings used unless :meth:`PropertyTwinModel.fit` overrides them.  Chosen
#: by cross-validation inside the training folds of ``benchmarks/materials.py``.
DEFAULT_TRAINING: dict[str, Any] = {"epochs": 1500, "patience": 100, "modality_dropout": 0.5}


class PropertyTwinModel:
    """A twin of a material's properties given its composition and processing.

    Parameters
    ----------
    inputs
        Input modalities (composition, processing, structure), e.g. ``["mix"]``.
    outputs
        Output (property) modalities, e.g. ``["strength_at_age"]``.
    latent_dim
        Dimension of the shared latent state.
    specs
        ``{modality: ModalitySpec}`` overriding ``default_spec``.
    default_spec
        Network and likelihood of the other modalities (:data:`DEFAULT_SPEC`).
    derived
        Derived input features, recomputed from their components for candidates
        given as tables (e.g. :data:`~twin.materials_twins.derived.CONCRETE_DERIVED`).
    graph
        Process graph checked at :meth:`fit`; default: the graph the training cohort
        carries (``twin_process_graph``), if any.
    conditional
        ``True``: the property decoders see the inputs directly (as
        decoder covariates) and the latent state is what the inputs do not explain,
        the batch's own deviation: ``p(properties | inputs, z)``.  Known inputs then
        act through a flexible regression, and measured properties move ``z`` (an
        update) -- if the decoders leave any structure in the training residuals for
        ``z`` to carry: on the concrete data they do not (posterior sd of ``z`` stays
        1.00 with every age measured), so there a measurement updates nothing.  A
        missing input is set to its training mean (with a warning).
        ``False`` (default): inputs are a modality of a joint latent model
        ``p(inputs, properties | z)``, which can also impute missing inputs; on
        concrete it is the better of the two (``benchmarks/materials.py``, one member: 28-day MAE
        4.76 vs 4.82 MPa, later ages 3.75 vs 4.34).
    mean_model
        ``None`` (default), or a function returning a fresh regressor with the
        scikit-learn interface (``fit(X, y)``, ``predict(X)``), e.g.
        ``lambda: HistGradientBoostingRegressor()``: the properties are then that
        regression's prediction from the inputs plus a deviation carried by the latent
        state, ``property = mean(inputs) + deviation(z)``
        (:class:`~twin.materials_twins.mean_model.PropertyMean`).  The regression is
        cross-fitted (``mean_folds`` folds over batches) and the latent model is
        trained on the out-of-fold residuals of the outputs only, so its prior
        predictive is the spread of the regression's errors on new batches (the
        interval from the inputs alone) and a measured property moves ``z`` and the
        deviations of the others (the update).  Use it when a tabular learner predicts
        the properties from the inputs better than the latent model does
        (``benchmarks/materials.py``, ``twin_gbm``: concrete 28-day strength with
        gradient-boosted trees); every input must then be given.  Outputs must be
        continuous; not with ``conditional``.  :meth:`twins` gives the twins of the
        deviations.  The deviations need only a small latent model: on concrete one
        factor with a linear decoder and Student-t noise (``latent_dim=1``,
        ``ModalitySpec(decoder_hidden=(), continuous="student_t")``) lets an early test
        move the later ages most (MAE 3.45 against 3.62 MPa with two dimensions and a
        hidden layer).
    mean_folds
        Cross-fitting folds of ``mean_model``.
    n_members
        Number of population models trained from different seeds (a deep ensemble).
        With more than one, every prediction is the equal-weight mixture of the
        members' predictives: :meth:`sample` pools draws from every member and
        :meth:`predict`, :meth:`probability`, :meth:`curve` and the inverse design
        summarise the pooled draws.  A small data set leaves the fitted network
        depending on its training seed; the mixture averages that out and widens
        intervals where the members disagree (``benchmarks/materials.py``: concrete
        28-day MAE, later ages with the earliest given, and the spread of a design's
        probability between training seeds, one member against five).  Training
        time grows with the number of members.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    num_threads
        Torch CPU threads while the model computes (see :class:`twin.TwinModel`).

    Attributes
    ----------
    members
        The fitted :class:`twin.TwinModel` of each ensemble member (empty before
        :meth:`fit`).
    model
        The first member (``None`` before :meth:`fit`); the only one by default.
    schema
        Schema of the input and output modalities seen at :meth:`fit`.
    input_stats
        Per input label: training ``mean``, ``sd``, ``min``, ``max`` and ``unit``.
    training_inputs
        The training individuals' inputs (:meth:`input_frame`), used by
        :func:`~twin.materials_twins.inverse_design` to keep designs near the data.

    Examples
    --------
    >>> from twin.datasets import concrete_csv_path                     # doctest: +SKIP
    >>> from twin.materials import read_concrete, strength_at_ages      # doctest: +SKIP
    >>> from twin.materials_twins import CONCRETE_DERIVED               # doctest: +SKIP
    >>> cohort = strength_at_ages(read_concrete(concrete_csv_path()))  # doctest: +SKIP
    >>> model = PropertyTwinModel(["mix"], ["strength_at_age"],
    ...                           derived=CONCRETE_DERIVED).fit(cohort)  # doctest: +SKIP
    >>> model.predict(mixes)["q05"].sel(property="fc_28d")             # doctest: +SKIP
    """

    def __init__(
        self,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        latent_dim: int = 8,
        specs: Mapping[str, ModalitySpec] | None = None,
        default_spec: ModalitySpec | None = None,
        derived: DerivedFeatures | None = None,
        graph: ProcessGraph | None = None,
        conditional: bool = False,
        mean_model: Callable[[], Any] | None = None,
        mean_folds: int = 5,
        n_members: int = 1,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
    ):
        self.inputs = [str(m) for m in inputs]
        self.outputs = [str(m) for m in outputs]
        if not self.inputs or not self.outputs:
            raise ValueError("a property twin needs at least one input and one output modality")
        both = set(self.inputs) & set(self.outputs)
        if both:
            raise ValueError(f"modalities {sorted(both)} are listed as both inputs and outputs")
        if len(set(self.inputs + self.outputs)) != len(self.inputs) + len(self.outputs):
            raise ValueError("a modality is listed twice")
        self.latent_dim = int(latent_dim)
        self.specs = dict(specs or {})
        self.default_spec = default_spec or DEFAULT_SPEC
        self.derived = derived or DerivedFeatures()
        self.graph = graph
        self.device = device
        self.num_threads = num_threads
        self.conditional = bool(conditional)
        if mean_model is not None and not callable(mean_model):
            raise TypeError(
                "mean_model must be a function returning a fresh regressor "
                "(e.g. lambda: HistGradientBoostingRegressor()), got "
                f"{type(mean_model).__name__}"
            )
        if mean_model is not None and self.conditional:
            raise ValueError(
                "a mean_model and conditional=True are two ways of feeding the inputs to the "
                "properties; choose one"
            )
        self.mean_model = mean_model
        self.mean_folds = int(mean_folds)
        self.mean: PropertyMean | None = None
        if isinstance(n_members, bool) or int(n_members) != n_members or n_members < 1:
            raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
        self.n_members = int(n_members)
        self.members: list[TwinModel] = []
        self.schema: CohortSchema | None = None
        self.input_stats: pd.DataFrame | None = None
        self.training_inputs: pd.DataFrame | None = None

    # ------------------------------------------------------------------ structure
    @property
    def model(self) -> TwinModel | None:
        """The first ensemble member (``None`` before :meth:`fit`)."""
        return self.members[0] if self.members else None

    @property
    def is_fitted(self) -> bool:
        return bool(self.members)

    def _require_fitted(self) -> TwinModel:
        if not self.members:
            raise RuntimeError("the property twin is not fitted yet; call .fit(cohort) first")
        return self.members[0]

    def _schema(self) -> CohortSchema:
        if self.schema is None:
            raise RuntimeError("the property twin is not fitted yet; call .fit(cohort) first")
        return self.schema

    def _features(self, modalities: Sequence[str]) -> list[tuple[str, str]]:
        schema = self._schema()
        return [(m, f) for m in modalities for f in schema[m].feature_names]

    def _label(self, modality: str, feature: str) -> str:
        schema = self._schema()
        count = sum(feature in schema[m].feature_names for m in self.inputs + self.outputs)
        return feature if count == 1 else f"{modality}.{feature}"

    @property
    def input_names(self) -> list[str]:
        """Input feature labels (the feature name; ``modality.feature`` if ambiguous)."""
        return [self._label(m, f) for m, f in self._features(self.inputs)]

    @property
    def property_names(self) -> list[str]:
        """Output feature labels, the ``property`` coordinate of predictions."""
        return [self._label(m, f) for m, f in self._features(self.outputs)]

    @property
    def settable_inputs(self) -> list[str]:
        """Inputs a setting may name: base inputs and derived ones that adjust a base input."""
        return [
            n
            for n in self.input_names
            if n not in self.derived or self.derived[n].adjusts is not None
        ]

    @property
    def base_inputs(self) -> list[str]:
        """Inputs that are not derived from others (the free components of a design)."""
        return self.derived.base_inputs(self.input_names)

    def units(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Unit of every input and property label."""
        schema = self._schema()
        out = {}
        for m, f in self._features(self.inputs + self.outputs):
            out[self._label(m, f)] = schema[m].feature(f).unit
        return out if names is None else {n: out[n] for n in names}

    def age_features(self) -> dict[str, float]:
        """Output labels that name an age (``fc_28d`` → 28.0), for :meth:`curve`."""
        ages = {}
        for n in self.property_names:
            try:
                ages[n] = feature_age(n.split(".")[-1])
            except ValueError:
                continue
        return ages

    # ------------------------------------------------------------------ fitting
    def check_graph(self, graph: ProcessGraph) -> None:
        """Refuse inputs that may not inform every output according to ``graph``.

        Raises
        ------
        ValueError
            Naming each (input, output) pair the graph does not allow.
        """
        missing = [m for m in self.inputs + self.outputs if m not in graph.modalities]
        if missing:
            raise ValueError(f"the process graph has no modalities {missing}: {graph.modalities}")
        bad = [(i, o) for i in self.inputs for o in self.outputs if not graph.informs(i, o)]
        if bad:
            text = ", ".join(f"{i} -> {o}" for i, o in bad)
            raise ValueError(
                f"the process graph does not let {text} (input -> output) inform; a property twin "
                "predicts outputs from inputs upstream of them"
            )

    def fit(
        self,
        cohort: Cohort,
        *,
        seed: int = 0,
        progress: bool = False,
        mean_groups: Sequence[Any] | None = None,
        n_jobs: int | None = 1,
        **training: Any,
    ) -> PropertyTwinModel:
        """Train the twin on ``cohort`` (from scratch).

        Parameters
        ----------
        cohort
            Training cohort holding the input and output modalities (static).
        seed
            Seed of initialisation, training and validation split (member ``k`` of an
            ensemble uses :func:`member_seed` ``(seed, k)``).
        progress
            Show a progress bar.
        mean_groups
            With a ``mean_model``: a label per individual (cohort order) that the
            cross-fitting keeps together, e.g. the heat of each steel sample.
        n_jobs
            Worker processes training ensemble members at the same time on the CPU
            (``-1``: one per core); 1 (default) trains them in turn, with the same
            result (:mod:`twin.model.member_training`).
        training
            :class:`twin.TrainingConfig` fields overriding :data:`DEFAULT_TRAINING`.

        Returns
        -------
        PropertyTwinModel
            ``self``, fitted.
        """
        for m in self.inputs + self.outputs:
            if m not in cohort.modalities:
                raise KeyError(f"the cohort has no modality {m!r}; modalities: {cohort.modalities}")
            if m in cohort.longitudinal_modalities:
                raise ValueError(
                    f"modality {m!r} is longitudinal; a property twin needs static modalities "
                    "(for a property over age use twin.materials.strength_at_ages)"
                )
        graph = self.graph
        if graph is None and GRAPH_ATTR in cohort.data.attrs:
            graph = ProcessGraph.from_cohort(cohort)
        if graph is not None:
            self.check_graph(graph)
        self.graph = graph
        self.schema = CohortSchema(tuple(cohort.schema[m] for m in self.inputs + self.outputs))
        output_types = {
            f"{m}.{f.name}": f.type for m in self.outputs for f in self.schema[m].features
        }
        categorical = [name for name, kind in output_types.items() if kind == "categorical"]
        if self.n_members > 1 and categorical:
            raise ValueError(
                f"an ensemble (n_members={self.n_members}) summarises pooled draws, which has "
                f"no level probabilities for the categorical outputs {categorical}; use "
                "n_members=1 or make them inputs"
            )
        if self.mean_model is not None:
            not_continuous = [name for name, kind in output_types.items() if kind != "continuous"]
            if not_continuous:
                raise ValueError(
                    f"a mean_model regresses continuous outputs; {not_continuous} are not "
                    "continuous"
                )
        elif mean_groups is not None:
            raise ValueError("mean_groups groups the cross-fitting of a mean_model; there is none")
        self.members = []  # refitting from scratch: no half-updated state on failure
        self.mean = None
        modalities = self._latent_modalities
        if self.conditional:
            cohort = self._with_input_covariates(cohort)
        mean, fit_cohort = None, cohort
        if self.mean_model is not None:
            mean, fit_cohort = self._fit_mean(cohort, seed, mean_groups)
        options = {
            "modalities": modalities,
            "specs": {m: s for m, s in self.specs.items() if m in modalities},
            "default_spec": self.default_spec,
            "covariates": self.input_names if self.conditional else None,
            "device": self.device,
            "num_threads": self.num_threads,
        }
        settings = {**DEFAULT_TRAINING, **training}
        jobs = [
            MemberJob(
                fit_cohort.schema,
                self.latent_dim,
                fit_cohort,
                options,
                {"seed": member_seed(seed, k), **settings},
            )
            for k in range(self.n_members)
        ]
        members = fit_members(jobs, n_jobs, progress)
        self.members = members
        self.mean = mean
        frame = self.input_frame(cohort)
        self.training_inputs = frame
        self.input_stats = pd.DataFrame(
            {
                "mean": frame.mean(),
                "sd": frame.std(ddof=1),
                "min": frame.min(),
                "max": frame.max(),
                "unit": pd.Series(self.units(self.input_names)),
            }
        )
        return self

    @property
    def _latent_modalities(self) -> list[str]:
        """Modalities of the latent model: the outputs alone when the inputs reach them
        otherwise (conditional decoders, a mean model), else inputs and outputs."""
        if self.conditional or self.mean_model is not None:
            return list(self.outputs)
        return self.inputs + self.outputs

    def _fit_mean(
        self, cohort: Cohort, seed: int, groups: Sequence[Any] | None
    ) -> tuple[PropertyMean, Cohort]:
        """The fitted mean model and the cohort of its cross-fitted output residuals."""
        x, y = self.input_frame(cohort), self.output_frame(cohort)
        mean = PropertyMean(
            self.mean_model,
            self.property_names,
            self.age_features(),
            folds=self.mean_folds,
            seed=seed,
        )
        residuals = mean.fit(x, y, groups)
        return mean, self._table_cohort(x.index.to_numpy(dtype=object), x, residuals)

    def _offset(self, x: pd.DataFrame) -> np.ndarray | None:
        """The mean model's prediction for the inputs ``x`` (``None`` without one)."""
        return None if self.mean is None else self.mean.predict(x[self.input_names])

    # ------------------------------------------------------------------ tables
    def input_frame(self, cohort: Cohort) -> pd.DataFrame:
        """The input features of a cohort as a table (NaN where unobserved)."""
        return self._frame(cohort, self.inputs)

    def output_frame(self, cohort: Cohort) -> pd.DataFrame:
        """The measured output features of a cohort as a table (NaN where unobserved)."""
        return self._frame(cohort, self.outputs)

    def _with_input_covariates(self, cohort: Cohort) -> Cohort:
        """``cohort`` with the input features added as covariates (conditional twin)."""
        table = self._frame(cohort, self.inputs)
        ok = np.isfinite(table.to_numpy(dtype=float))
        if not ok.all():
            bad = table.columns[~ok.all(axis=0)].tolist()
            warnings.warn(
                f"inputs {bad} are missing for {int((~ok.all(axis=1)).sum())} individuals; the "
                "conditional twin sets a missing input to its training mean",
                stacklevel=3,
            )
        data = cohort.data.copy()
        for c in table.columns:
            data[f"covariate_{c}"] = ("individual", table[c].to_numpy(dtype=float))
        return Cohort(data)

    def _check_inputs(self, cohort: Cohort) -> None:
        """Refuse input features that ``cohort`` describes differently from training (the
        model's own check; a conditional twin's model does not hold the inputs)."""
        schema = self._schema()
        for m in self.inputs:
            if m in cohort.modalities:
                check_modality(schema[m], cohort.schema[m])

    def _frame(self, cohort: Cohort, modalities: Sequence[str]) -> pd.DataFrame:
        schema = self._schema()
        cols = {}
        for m in modalities:
            names = schema[m].feature_names
            if m in cohort.modalities:
                have = list(cohort.features(m)["name"])
                vals = np.where(cohort.mask(m), cohort.values(m), np.nan)
                for f in names:
                    cols[self._label(m, f)] = vals[:, have.index(f)] if f in have else np.nan
            else:
                for f in names:
                    cols[self._label(m, f)] = np.nan
        return pd.DataFrame(cols, index=pd.Index(cohort.individuals.astype(str), name="individual"))

    def complete_inputs(self, frame: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
        """Candidate inputs as a full input table: derived features recomputed, others NaN.

        Raises
        ------
        SettingError
            For a column that is not an input of the model (an output column is named
            as such: pass measured outputs as ``observed``).
        """
        self._require_fitted()
        frame = pd.DataFrame(frame).copy()
        frame.columns = [str(c) for c in frame.columns]
        unknown = [c for c in frame.columns if c not in self.input_names]
        if unknown:
            outputs = [c for c in unknown if c in self.property_names]
            hint = f"; {outputs} are outputs: pass them as `observed`" if outputs else ""
            raise SettingError(
                f"unknown input(s) {unknown}; the model's inputs are {self.input_names}{hint}"
            )
        frame = self.derived.apply_to_frame(frame.astype(float))
        return frame.reindex(columns=self.input_names)

    # ------------------------------------------------------------------ data
    def _arrays(
        self, inputs: Inputs, observed: Observed
    ) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
        """Ids, the input table and the observed-output table (NaN where unobserved)."""
        model = self._require_fitted()
        if isinstance(inputs, Cohort):
            # refuses features described differently (unit, type)
            if self.conditional or self.mean is not None:
                self._check_inputs(inputs)  # the latent model does not hold the inputs
            model.prepare(self._with_input_covariates(inputs) if self.conditional else inputs)
            ids = inputs.individuals.astype(str)
            x = self.input_frame(inputs)
            measured = self.output_frame(inputs)
        else:
            frame = pd.DataFrame(inputs)
            ids = np.asarray([str(i) for i in frame.index], dtype=object)
            if len(set(ids)) != len(ids):
                raise ValueError(
                    "the rows of inputs need unique index labels (they name the candidates)"
                )
            x = self.complete_inputs(frame)
            measured = None
        x.index = pd.Index(ids, name="individual")
        y = pd.DataFrame(np.nan, index=x.index, columns=self.property_names)
        if observed is None:
            pass
        elif isinstance(observed, str | list | tuple):
            if observed == "all":
                names = list(self.property_names)
            else:
                names = [observed] if isinstance(observed, str) else list(observed)
            unknown = [n for n in names if n not in self.property_names]
            if unknown:
                raise KeyError(f"unknown properties {unknown}; properties: {self.property_names}")
            if measured is None:
                raise ValueError(
                    "observed as a list of names needs a Cohort as inputs; pass a table of "
                    "measured values instead"
                )
            y[names] = measured[names].to_numpy()
        else:
            table = pd.DataFrame(observed)
            table.columns = [str(c) for c in table.columns]
            unknown = [c for c in table.columns if c not in self.property_names]
            if unknown:
                raise KeyError(f"unknown properties {unknown}; properties: {self.property_names}")
            labels = pd.Index([str(i) for i in table.index])
            if (
                not isinstance(table.index, pd.RangeIndex)
                and labels.is_unique
                and labels.isin(y.index).all()
            ):  # rows named by id: align by id (ids absent from it: nothing measured)
                table = table.set_axis(labels).reindex(y.index)
            elif len(table) != len(y):
                raise ValueError(f"observed has {len(table)} rows for {len(y)} inputs")
            y[list(table.columns)] = table.to_numpy(dtype=float)
        return ids, x, y

    def _observed_data(
        self, ids: np.ndarray, x: pd.DataFrame, y: pd.DataFrame, members: Sequence[int]
    ) -> list[ObservedData]:
        """The chosen members' prepared data for input and output tables (through a cohort,
        so the model's own checks and layout apply)."""
        self._require_fitted()
        cohort = self._table_cohort(ids, x, y)
        return [self.members[k].prepare(cohort) for k in members]

    def _table_cohort(self, ids: np.ndarray, x: pd.DataFrame, y: pd.DataFrame) -> Cohort:
        """The latent model's modalities as a cohort, from input and output tables."""
        tables, info = {}, {}
        schema = self._schema()
        pairs = ((self.inputs, x), (self.outputs, y))
        pairs = tuple((m, t) for m, t in pairs if set(m) <= set(self._latent_modalities))
        for modalities, table in pairs:
            for m in modalities:
                feats = schema[m].features
                cols = {}
                for f in feats:
                    col = table[self._label(m, f.name)].to_numpy(dtype=float)
                    if f.type == "categorical":  # codes -> level labels
                        labels = np.asarray(f.levels, dtype=object)
                        ok = np.isfinite(col)
                        lab = np.full(len(col), None, dtype=object)
                        lab[ok] = labels[col[ok].astype(int)]
                        col = lab
                    cols[f.name] = col
                tables[m] = pd.DataFrame(cols, index=pd.Index(ids, dtype=object))
                info[m] = {
                    f.name: {
                        "unit": f.unit,
                        "system": f.system,
                        "code": f.code,
                        "display": f.display,
                        "type": f.type,
                        **({"levels": list(f.levels)} if f.levels else {}),
                    }
                    for f in feats
                }
        covariates = None
        if self.conditional:
            covariates = x[self.input_names].set_axis(pd.Index(ids, dtype=object))
        return Cohort.from_tables(
            tables, feature_info=info, individuals=list(ids), covariates=covariates
        )

    def twins(
        self,
        inputs: Inputs,
        observed: Observed = None,
        *,
        refine_steps: int | str = "auto",
        seed: int = 0,
        member: int = 0,
    ) -> Twins:
        """Twins of the candidates (or individuals) conditioned on inputs and observed outputs.

        A twin is the posterior of one population model: with an ensemble
        (``n_members > 1``) this gives member ``member``'s twins; :meth:`predict`,
        :meth:`sample` and :meth:`curve` use every member.

        Parameters
        ----------
        inputs
            A :class:`~twin.Cohort` holding the input modalities, or a table / mapping
            with one column per input feature (:attr:`input_names`; derived features
            are recomputed from their components; NaN = unknown).
        observed
            Measured outputs: ``None`` (none), a table / mapping of property columns
            (NaN = not measured) whose rows are the inputs' ids (aligned by id; ids it
            lacks have nothing measured) or are in the inputs' order, or, for a cohort,
            the names of the properties to take from it (``"all"``: every measured one).
        refine_steps
            Per-individual refinement of the posterior under the frozen decoders (see
            :meth:`twin.TwinModel.instantiate`).  ``"auto"`` (default): refine
            (:data:`AUTO_REFINE_STEPS` steps) when a modality is only partly observed
            (some of its features measured, e.g. hardness but not tensile strength) and
            use the amortised posterior as is otherwise.  The amortised encoder is
            trained on the mask patterns of the training data; a pattern it has never
            seen (NIMS properties are always measured together) gives a poor expert,
            and refinement, which scores only the observed entries under the decoder,
            repairs it (``benchmarks/materials.py``: NIMS fatigue-strength error with
            hardness measured 24 → 9 MPa).
        seed
            Seed of the refinement's Monte Carlo draws.
        member
            Which ensemble member's twins (``0`` ... ``n_members - 1``).  With a
            ``mean_model`` the twins are of the outputs' deviations from its
            prediction; :meth:`predict` and :meth:`sample` add the prediction back.
        """
        if not 0 <= int(member) < max(len(self.members), 1):
            raise IndexError(f"member must be in 0 ... {len(self.members) - 1}, got {member}")
        return self._build(inputs, observed, refine_steps, seed, members=[int(member)])[0][0]

    def _build(
        self,
        inputs: Inputs,
        observed: Observed,
        refine_steps: int | str,
        seed: int = 0,
        members: Sequence[int] | None = None,
    ) -> tuple[list[Twins], pd.DataFrame, np.ndarray | None]:
        """Twins of each chosen member (default: all), the input table used, and the mean
        model's prediction for that table (``None`` without a mean model; with one, the
        twins are of the deviations from it)."""
        self._require_fitted()
        ids, x, y = self._arrays(inputs, observed)
        offset = self._offset(x)
        if offset is not None:
            y = y - offset
        chosen = list(range(len(self.members))) if members is None else list(members)
        prepared = self._observed_data(ids, x, y, chosen)
        steps = self._refine_steps(prepared[0], refine_steps)
        out = []
        for k, data in zip(chosen, prepared, strict=True):
            model = self.members[k]
            loc, tril = model.posterior(data, refine_steps=steps, seed=member_seed(seed, k))
            out.append(Twins(model, data, loc, tril, refine_steps=steps))
        return out, x, offset

    def _refine_steps(self, data: ObservedData, refine_steps: int | str) -> int:
        """``"auto"``: :data:`AUTO_REFINE_STEPS` if some modality is partly observed, else 0."""
        if refine_steps != "auto":
            if isinstance(refine_steps, str) or int(refine_steps) < 0:
                raise ValueError(f"refine_steps must be 'auto' or >= 0, got {refine_steps!r}")
            return int(refine_steps)
        partial = any(
            bool((mask.any(dim=1) & ~mask.all(dim=1)).any()) for mask in data.masks.values()
        )
        return AUTO_REFINE_STEPS if partial else 0

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        inputs: Inputs,
        observed: Observed = None,
        *,
        n_draws: int = 500,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        seed: int = 0,
        refine_steps: int | str = "auto",
    ) -> xr.Dataset:
        """Predictive distribution of every property, vectorised over candidates.

        Parameters
        ----------
        inputs, observed, refine_steps
            See :meth:`twins`.
        n_draws
            Posterior predictive draws per candidate.
        quantiles
            Quantile levels; the default gives the 90 % interval ``q05``–``q95``.
        seed
            Seed of the draws.

        Returns
        -------
        xarray.Dataset
            On ``(individual, property)``: ``mean``, ``sd``, one ``qNN`` per quantile
            level, ``observed`` (True where the value was measured and is returned as
            is); on ``(individual, input)``: ``inputs``, the input values used
            (derived features recomputed).  Coordinates ``unit`` and ``modality`` on
            ``property``.
        """
        check_quantiles(quantiles)
        built, x, offset = self._build(inputs, observed, refine_steps, seed)
        shift = 0.0 if offset is None else offset
        ids = built[0].individuals.astype(str)
        names = [quantile_suffix(float(q)) for q in quantiles]
        out = {}
        if len(built) == 1:
            imp = built[0].impute(n_draws=n_draws, quantiles=quantiles, seed=seed)
            stats = {"mean": "", "sd": "_sd", **{n: f"_{n}" for n in names}}
            stats["observed"] = "_observed"
            for key, suffix in stats.items():
                parts = [imp[f"{m}{suffix}"].values for m in self.outputs]
                value = np.concatenate(parts, axis=1)
                if key not in ("sd", "observed"):  # location statistics move with the mean
                    value = value + shift
                out[key] = (("individual", "property"), value)
        else:  # the mixture of the members' predictives, from pooled draws
            draws = self._pooled_draws(built, n_draws, seed, offset)  # measured: same in each
            obs = np.concatenate([built[0].data.masks[m].cpu().numpy() for m in self.outputs], 1)
            dims = ("individual", "property")
            out["mean"] = (dims, np.where(obs, draws[0], draws.mean(0)))
            out["sd"] = (dims, np.where(obs, 0.0, draws.std(0, ddof=1)))
            for q, name in zip(quantiles, names, strict=True):
                out[name] = (dims, np.where(obs, draws[0], np.quantile(draws, float(q), axis=0)))
            out["observed"] = (dims, obs)
        out["inputs"] = (("individual", "input"), x.to_numpy(dtype=float))
        units = self.units()
        return xr.Dataset(
            out,
            coords={
                "individual": ("individual", ids),
                "property": ("property", np.array(self.property_names, dtype=object)),
                "input": ("input", np.array(self.input_names, dtype=object)),
                "unit": (
                    "property",
                    np.array([units[p] for p in self.property_names], dtype=object),
                ),
                "modality": (
                    "property",
                    np.array([m for m, _ in self._features(self.outputs)], dtype=object),
                ),
            },
            attrs={
                "n_draws": int(n_draws),
                "seed": int(seed),
                "quantiles": [float(q) for q in quantiles],
                "refine_steps": int(built[0].refine_steps),
                "n_members": len(built),
            },
        )

    def sample(
        self,
        inputs: Inputs,
        observed: Observed = None,
        *,
        n_draws: int = 200,
        seed: int = 0,
        refine_steps: int | str = "auto",
    ) -> xr.DataArray:
        """Joint posterior predictive draws of the properties: ``(draw, individual, property)``.

        Measured properties hold their measured value in every draw.  With an ensemble
        the draws are pooled from every member (member ``k`` gives draws
        ``k * n_draws // n_members`` onwards), a sample of the equal-weight mixture.
        """
        built, _, offset = self._build(inputs, observed, refine_steps, seed)
        arr = self._pooled_draws(built, n_draws, seed, offset)
        return xr.DataArray(
            arr,
            dims=("draw", "individual", "property"),
            coords={
                "draw": np.arange(n_draws),
                "individual": built[0].individuals.astype(str),
                "property": np.array(self.property_names, dtype=object),
            },
            name="draws",
        )

    def _pooled_draws(
        self, built: Sequence[Twins], n_draws: int, seed: int, offset: np.ndarray | None = None
    ) -> np.ndarray:
        """``(n_draws, individual, property)`` draws, split as evenly as possible between the
        members' twins (observed values kept), plus the mean model's ``offset``."""
        parts = []
        for k, (twins, count) in enumerate(
            zip(built, split_draws(n_draws, len(built)), strict=True)
        ):
            draws = twins.sample(n_draws=count, seed=member_seed(seed, k), keep_observed=True)
            parts.append(np.concatenate([draws[m].values for m in self.outputs], axis=-1))
        pooled = np.concatenate(parts, axis=0)
        return pooled if offset is None else pooled + offset

    def probability(
        self,
        inputs: Inputs,
        target: Mapping[str, float | tuple[str, float]],
        observed: Observed = None,
        *,
        n_draws: int = 1000,
        seed: int = 0,
    ) -> np.ndarray:
        """Probability that every target is met, per candidate (from joint draws).

        ``target`` maps property labels to a threshold (``>=``) or an
        ``(operator, threshold)`` pair with operator ``">="`` or ``"<="``.
        """
        draws = self.sample(inputs, observed, n_draws=n_draws, seed=seed)
        return probability_from_draws(draws, target)

    def curve(
        self,
        inputs: Inputs,
        ages: Sequence[float],
        observed: Observed = None,
        *,
        n_draws: int = 500,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        seed: int = 0,
        refine_steps: int | str = "auto",
    ) -> xr.Dataset:
        """A property over age between and beyond the model's canonical ages.

        Every joint predictive draw at the canonical ages (``fc_3d`` ... ``fc_365d``) is
        interpolated linearly in log-age, so each draw stays a plausible curve and the
        mean and quantiles at an age between two test ages come from the same draws
        (a measured age passes through its measurement).  Ages outside the canonical
        range are extrapolated linearly in log-age from the two nearest canonical ages
        (flagged by ``extrapolated``; values floored at 0).

        Returns
        -------
        xarray.Dataset
            ``mean``, ``sd`` and ``qNN`` on ``(individual, age)``; coordinate
            ``extrapolated`` on ``age``.
        """
        from twin.materials_twins.curves import interpolate_log_age

        age_map = self.age_features()
        if len(age_map) < 2:
            raise ValueError(
                "curve needs at least two output features named by age (fc_28d, ...); "
                f"the properties are {self.property_names}"
            )
        grid = np.asarray([float(a) for a in ages])
        if grid.ndim != 1 or grid.size == 0 or (grid <= 0).any() or not np.isfinite(grid).all():
            raise ValueError(f"ages must be positive and finite, got {list(ages)}")
        draws = self.sample(inputs, observed, n_draws=n_draws, seed=seed, refine_steps=refine_steps)
        names = sorted(age_map, key=age_map.get)
        known = np.asarray([age_map[n] for n in names])
        values = draws.sel(property=names).values  # (S, N, K)
        curves = interpolate_log_age(known, values, grid)  # (S, N, A)
        qs = [float(q) for q in quantiles]
        data = {
            "mean": (("individual", "age"), curves.mean(0)),
            "sd": (("individual", "age"), curves.std(0, ddof=1)),
        }
        for q, n in zip(qs, (quantile_suffix(q) for q in qs), strict=True):
            data[n] = (("individual", "age"), np.quantile(curves, q, axis=0))
        return xr.Dataset(
            data,
            coords={
                "individual": draws["individual"].values,
                "age": ("age", grid),
                "extrapolated": ("age", (grid < known[0]) | (grid > known[-1])),
            },
            attrs={"n_draws": int(n_draws), "seed": int(seed), "quantiles": qs},
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Save the fitted twin into the folder ``path`` (no pickle).

        Refused for a twin on a ``mean_model`` (scikit-learn estimators are not stored);
        see :mod:`twin.materials_twins.persistence`.
        """
        from twin.materials_twins.persistence import save_property_twin

        return save_property_twin(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        derived: DerivedFeatures | None = None,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
    ) -> PropertyTwinModel:
        """Load a twin written by :meth:`save`.

        ``derived`` is needed only for a twin saved with custom derived features
        (their formulas are code); the concrete set is restored by name.
        """
        from twin.materials_twins.persistence import load_property_twin

        return load_property_twin(path, derived=derived, device=device, num_threads=num_threads)

    @property
    def _kind(self) -> str:
        if self.mean is not None:
            return f"{self.mean.estimator_name} mean + latent deviation"
        if self.mean_model is not None:
            return "mean model + latent deviation"
        return "conditional" if self.conditional else "joint"

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"<twin.PropertyTwinModel: {' + '.join(self.inputs)} -> {' + '.join(self.outputs)}, "
            f"latent_dim {self.latent_dim}, {self._kind}, "
            f"{self.n_members} member{'s' if self.n_members > 1 else ''}, {state}>"
        )


def probability_from_draws(
    draws: xr.DataArray, target: Mapping[str, float | tuple[str, float]]
) -> np.ndarray:
    """Share of joint draws meeting every target: ``(individual,)``.

    Parameters
    ----------
    draws
        ``(draw, individual, property)`` from :meth:`PropertyTwinModel.sample`.
    target
        ``{property: threshold}`` (``>=``) or ``{property: (">=" | "<=", threshold)}``.
    """
    if not target:
        raise ValueError("give at least one target")
    ok = np.ones(draws.shape[:2], dtype=bool)
    props = list(draws["property"].values)
    for name, spec in target.items():
        if name not in props:
            raise KeyError(f"unknown target property {name!r}; properties: {props}")
        op, value = parse_target(spec, name)
        x = draws.sel(property=name).values
        ok &= x >= value if op == ">=" else x <= value
    return ok.mean(axis=0)


def parse_target(spec: float | tuple[str, float], name: str = "target") -> tuple[str, float]:
    """``40`` → ``(">=", 40.0)``; ``("<=", 5)`` → ``("<=", 5.0)``."""
    if isinstance(spec, tuple | list):
        if len(spec) != 2 or spec[0] not in (">=", "<="):
            raise ValueError(f"{name}: a target is a number or ('>=' | '<=', number), got {spec!r}")
        op, value = spec[0], float(spec[1])
    else:
        op, value = ">=", float(spec)
    if not np.isfinite(value):
        raise ValueError(f"{name}: the target must be finite, got {value}")
    return op, value
