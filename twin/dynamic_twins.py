"""Longitudinal digital twins: the posterior of each individual's latent state over time.

A :class:`DynamicTwins` object is what :meth:`DynamicTwinModel.instantiate` returns. Per
individual it keeps the Gaussian posterior of the latent state at the *current time*
(the last observation it has seen) as mean and covariance tensors, the observations
it was conditioned on and the recorded interventions. From it come

* :meth:`DynamicTwins.forecast`: posterior predictive of every modelled feature at any
  times (exact moments; quantiles in data units);
* :meth:`DynamicTwins.update`: refined twins given new observations, by exact
  filtering from the current posterior (the product-of-experts step of
  instantiation; never retraining);
* :meth:`DynamicTwins.simulate`: what-if trajectories under scenarios (the batched
  engine of :mod:`twin.simulation`);
* :meth:`DynamicTwins.plot`: observations, forecasts and uncertainty bands;
* :meth:`DynamicTwins.save` / :meth:`DynamicTwins.load`: the twins' state in one NetCDF
  file, to update them later without their full record (:mod:`twin.dynamic_twins_file`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from twin.cohort import Cohort
from twin.dynamics import kalman_filter, rts_smoother
from twin.model.dynamic_data import Sequences, pack_steps
from twin.model.state_filter import filter_states, is_linear, predict_moments
from twin.twins import DEFAULT_QUANTILES, check_quantiles, quantile_suffix

if TYPE_CHECKING:
    from twin.model.dynamic_model import DynamicTwinModel

__all__ = ["DynamicTwins", "quantile_name"]

#: Times closer than this (days, about 0.1 s) are the same time in :meth:`DynamicTwins.update`:
#: a reading or a medication start seen again in another export, whose times were
#: computed from another reference time, differ from the first copy only in the last bits.
SAME_TIME = 1e-6

#: Suffix of a quantile level (``0.05`` -> ``"q05"``), shared with :class:`twin.Twins`.
quantile_name = quantile_suffix


class DynamicTwins:
    """Posterior twins of individuals under a fitted :class:`~twin.model.dynamic_model.DynamicTwinModel`.

    Attributes
    ----------
    model
        The population dynamic model.
    individuals
        Individual ids, in order.
    time
        ``(N,)`` current time of each posterior (days since the individual's reference).
    mean, cov
        Posterior of the latent state at ``time``: ``(N, D)`` and ``(N, D, D)`` tensors.
    history
        The observations the posterior is conditioned on (standardised sequences).
    prior_mean, prior_cov, prior_time
        Initial-state prior and the time it applies at (first observation), kept so
        past times can be smoothed.
    interventions
        Recorded interventions of the modelled agents (Cohort layout).
    reference_time
        ``(N,)`` time zero of each individual (NaT without a calendar).
    death_time
        ``(N,)`` days since reference of each individual's recorded death
        (:attr:`Cohort.death_t`), NaN where none, ``-inf`` where the death has no
        date; forecasts after it are NaN.
    """

    def __init__(
        self,
        model: DynamicTwinModel,
        *,
        individuals: np.ndarray,
        time: np.ndarray,
        mean: torch.Tensor,
        cov: torch.Tensor,
        history: Sequences,
        prior_mean: torch.Tensor,
        prior_cov: torch.Tensor,
        prior_time: np.ndarray,
        interventions: pd.DataFrame,
        reference_time: np.ndarray,
        death_time: np.ndarray | None = None,
    ) -> None:
        n = len(individuals)
        if mean.shape[0] != n or cov.shape[0] != n or len(history) != n:
            raise ValueError("posterior, history and individuals must have one row per individual")
        self.model = model
        self.individuals = np.asarray(individuals, dtype=object)
        self.time = np.asarray(time, dtype=np.float64)
        self.mean = mean.detach()
        self.cov = cov.detach()
        self.history = history
        self.prior_mean = prior_mean.detach()
        self.prior_cov = prior_cov.detach()
        self.prior_time = np.asarray(prior_time, dtype=np.float64)
        self.interventions = interventions.reset_index(drop=True)
        self.reference_time = np.asarray(reference_time)
        self.death_time = (
            np.full(n, np.nan) if death_time is None else np.asarray(death_time, dtype=float)
        )
        if self.death_time.shape != (n,):
            raise ValueError("death_time must have one entry per individual")

    # ------------------------------------------------------------------ structure
    @property
    def death_cutoff(self) -> np.ndarray:
        """``(N,)`` days since reference after which a twin is not forecast, NaN where alive.

        The recorded death, or the twin's current time where its record goes on past
        the recorded death (a date-only ``deceasedDateTime`` reads as midnight, before
        readings of that day) or where the death has no date: a twin is always
        forecast up to its last observation.
        """
        d = self.death_time
        return np.where(np.isnan(d), np.nan, np.maximum(d, self.time))

    def undated_death_note(self, who: np.ndarray) -> str:
        """`` (k with no date of death: cut at the last record)`` for the twins flagged in
        ``who`` whose death has no date, or ``""``."""
        undated = int((np.asarray(who, dtype=bool) & np.isneginf(self.death_time)).sum())
        return f" ({undated} with no date of death: cut at the last record)" if undated else ""

    def __len__(self) -> int:
        return len(self.individuals)

    @property
    def latent_dim(self) -> int:
        return int(self.mean.shape[-1])

    @property
    def feature_names(self) -> list[str]:
        return list(self.model.feature_names)

    def _positions(self, sel: Any) -> np.ndarray:
        n = len(self)
        if isinstance(sel, slice):
            return np.arange(n)[sel]
        if isinstance(sel, str | int | np.integer):
            sel = [sel]
        arr = np.asarray(sel)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"boolean selector needs shape ({n},), got {arr.shape}")
            return np.nonzero(arr)[0]
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            if (arr >= n).any() or (arr < -n).any():
                raise IndexError(f"positions out of range for {n} twins")
            return arr % n
        pos = pd.Index(self.individuals.astype(str)).get_indexer(arr.astype(str))
        if (pos < 0).any():
            raise KeyError(f"individuals not among the twins: {arr[pos < 0][:5].tolist()}")
        return pos

    def __getitem__(self, individuals: Any) -> DynamicTwins:
        """Twins of a subset of individuals (ids, positions, a slice or a boolean mask)."""
        pos = self._positions(individuals)
        idx = torch.as_tensor(pos, dtype=torch.long, device=self.mean.device)
        ids = set(self.individuals[pos].astype(str))
        iv = self.interventions[self.interventions["individual"].astype(str).isin(ids)]
        return DynamicTwins(
            self.model,
            individuals=self.individuals[pos],
            time=self.time[pos],
            mean=self.mean[idx],
            cov=self.cov[idx],
            history=self.history.take(pos),
            prior_mean=self.prior_mean[idx],
            prior_cov=self.prior_cov[idx],
            prior_time=self.prior_time[pos],
            interventions=iv,
            reference_time=self.reference_time[pos],
            death_time=self.death_time[pos],
        )

    def state(self) -> xr.Dataset:
        """Current posterior of the latent state: ``mean``, ``sd`` (individual, latent) and ``time``."""
        sd = torch.diagonal(self.cov, dim1=-2, dim2=-1).clamp_min(0).sqrt()
        return xr.Dataset(
            {
                "mean": (("individual", "latent"), self.mean.double().cpu().numpy()),
                "sd": (("individual", "latent"), sd.double().cpu().numpy()),
                "time": ("individual", self.time),
            },
            coords={"individual": self.individuals, "latent": np.arange(self.latent_dim)},
        )

    def observations(self) -> pd.DataFrame:
        """The observations the twins are conditioned on, in data units (long table)."""
        h = self.history
        y = self.model.transform.decode(np.where(h.mask, h.y, np.nan))
        i, k, f = np.nonzero(h.mask)
        return pd.DataFrame(
            {
                "individual": self.individuals[i],
                "t": h.times[i, k],
                "feature": np.asarray(self.feature_names, dtype=object)[f],
                "value": y[i, k, f],
            }
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the twins' state (posteriors, history, interventions, deaths) to a NetCDF
        file, atomically; an existing file is replaced only with ``overwrite``.

        Read it back with :meth:`load` and the same model, then :meth:`update` with new
        records: with linear dynamics the result equals twins instantiated from the whole
        record (the neural option filters by Monte Carlo: equal up to its sampling noise).
        """
        from twin.dynamic_twins_file import save_dynamic_twins

        return save_dynamic_twins(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, model: DynamicTwinModel) -> DynamicTwins:
        """Twins written by :meth:`save`, under ``model`` (the model that made them:
        another one is refused, since a posterior only holds under its own parameters)."""
        from twin.dynamic_twins_file import load_dynamic_twins

        return load_dynamic_twins(path, model)

    # ------------------------------------------------------------------ forecasting
    def _requested_times(self, times: Any, relative_to: str) -> tuple[np.ndarray, np.ndarray, bool]:
        dates = _as_dates(times)
        if dates is not None:
            return self._requested_dates(dates, relative_to)
        t = np.asarray(times, dtype=np.float64)
        shared = t.ndim == 1
        if t.ndim == 0:
            t, shared = t[None], True
        if shared:
            t = np.broadcast_to(t, (len(self), t.shape[0]))
        if t.shape[0] != len(self) or t.ndim != 2:
            raise ValueError(
                f"times must be (K,) or (N, K) with N = {len(self)}, got {np.shape(times)}"
            )
        if not np.isfinite(t).all():
            raise ValueError("forecast times must be finite")
        if relative_to == "last":
            absolute = self.time[:, None] + t
        elif relative_to == "reference":
            absolute = np.array(t)
        else:
            raise ValueError(f"relative_to must be 'reference' or 'last', got {relative_to!r}")
        return absolute, np.asarray(times, dtype=np.float64), shared

    def _requested_dates(
        self, dates: np.ndarray, relative_to: str
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Calendar dates (``(K,)`` shared or ``(N, K)``) as days since each reference time."""
        if relative_to != "reference":
            raise ValueError("dates are absolute: leave relative_to='reference' when passing dates")
        ref = self.reference_time
        if not np.issubdtype(ref.dtype, np.datetime64) or np.isnat(ref).any():
            raise ValueError(
                "these twins have no calendar (times are plain numbers of days); pass days, "
                "not dates"
            )
        shared = dates.ndim == 1
        grid = np.broadcast_to(dates, (len(self), dates.shape[0])) if shared else dates
        if grid.ndim != 2 or grid.shape[0] != len(self):
            raise ValueError(
                f"dates must be (K,) or (N, K) with N = {len(self)}, got {dates.shape}"
            )
        if np.isnat(grid).any():
            raise ValueError("forecast dates must not be missing (NaT)")
        absolute = (grid - ref[:, None]) / np.timedelta64(1, "D")
        return absolute.astype(np.float64), dates, shared

    def _warn_before_first_observation(self, absolute: np.ndarray, relative_to: str) -> None:
        """Warn when every asked time of some twin precedes its first observation (all NaN)."""
        early = (absolute < self.prior_time[:, None] - 1e-9).all(axis=1)
        if early.any():
            hint = (
                " (times count days since each individual's reference time; for days after "
                "the last observation pass relative_to='last', or pass calendar dates)"
                if relative_to == "reference"
                else ""
            )
            warnings.warn(
                f"every forecast time is before the first observation of {int(early.sum())} "
                f"twin(s), e.g. {self.individuals[early][0]!r}: their forecasts are NaN{hint}",
                UserWarning,
                stacklevel=3,
            )

    def latent_forecast(
        self, times: Any, relative_to: str = "reference"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent state moments ``(N, K, D)``, ``(N, K, D, D)`` at ``times`` (see :meth:`forecast`)."""
        absolute, _, _ = self._requested_times(times, relative_to)
        return self._latent_at(absolute)

    def _latent_at(self, absolute: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        past = absolute < self.time[:, None] - 1e-9
        if past.any():
            return self._smoothed_at(absolute)
        return self._predicted_at(absolute)

    def _grid(self, start: np.ndarray, requested: np.ndarray, lower: np.ndarray | None = None):
        """Union grid ``[start, requested, events]`` per individual and the requested positions."""
        model = self.model
        N, K = requested.shape
        cols = [start[:, None], requested]
        valid = [np.ones((N, 1), dtype=bool), np.ones((N, K), dtype=bool)]
        if model.insert_events and model.agents and len(self.interventions):
            from twin.model.dynamic_data import intervention_event_times

            ev = intervention_event_times(
                self.interventions, list(self.individuals), model.agents, model._delays()
            )
            lo = start if lower is None else lower
            with np.errstate(invalid="ignore"):
                cols.append(ev)
                valid.append((ev > lo[:, None]) & (ev < requested.max(1)[:, None]))
        all_t = np.concatenate(cols, axis=1)
        order, _, packed = pack_steps(all_t, np.concatenate(valid, axis=1))
        inverse = np.full(all_t.shape, -1, dtype=np.int64)
        np.put_along_axis(
            inverse, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1
        )
        return packed, inverse[:, 1 : 1 + K]

    def _predicted_at(self, absolute: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        module = model._require_fitted()
        packed, pos = self._grid(self.time, absolute)
        u = model.exposure(self.interventions, self.individuals, packed)
        t = model.internal_times(packed)
        with torch.no_grad():
            means, covs = predict_moments(
                module.dynamics,
                self.mean.to(model.dtype),
                self.cov.to(model.dtype),
                t,
                u,
                n_samples=int(model.neural.get("n_samples", 512)),
            )
        idx = torch.as_tensor(pos, device=means.device)
        rows = torch.arange(len(self), device=means.device)[:, None]
        return means[rows, idx], covs[rows, idx]

    def _smoothed_at(self, absolute: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior at any times given the whole record: RTS smoother on the union grid."""
        model = self.model
        module = model._require_fitted()
        if not is_linear(module.dynamics):
            raise NotImplementedError(
                "times before the current time need the RTS smoother, available for linear dynamics only"
            )
        h = self.history
        N, K = absolute.shape
        F = model.n_features
        real = np.arange(h.times.shape[1])[None, :] < h.n_steps[:, None]
        ok_req = absolute >= self.prior_time[:, None] - 1e-9
        cols_t = [self.prior_time[:, None], h.times, absolute]
        cols_v = [np.ones((N, 1), dtype=bool), real, ok_req]
        cols_y = [np.full((N, 1, F), np.nan), h.y, np.full((N, K, F), np.nan)]
        cols_m = [
            np.zeros((N, 1, F), dtype=bool),
            h.mask & real[..., None],
            np.zeros((N, K, F), dtype=bool),
        ]
        if model.insert_events and model.agents and len(self.interventions):
            from twin.model.dynamic_data import intervention_event_times

            ev = intervention_event_times(
                self.interventions, list(self.individuals), model.agents, model._delays()
            )
            hi = np.maximum(absolute.max(1), self.time)
            with np.errstate(invalid="ignore"):
                cols_t.append(ev)
                cols_v.append((ev > self.prior_time[:, None]) & (ev < hi[:, None]))
            cols_y.append(np.full((N, ev.shape[1], F), np.nan))
            cols_m.append(np.zeros((N, ev.shape[1], F), dtype=bool))
        all_t = np.concatenate(cols_t, axis=1)
        order, n_steps, packed = pack_steps(all_t, np.concatenate(cols_v, axis=1))
        yy = np.take_along_axis(np.concatenate(cols_y, axis=1), order[..., None], axis=1)
        mm = np.take_along_axis(np.concatenate(cols_m, axis=1), order[..., None], axis=1)
        mm &= (np.arange(packed.shape[1])[None, :] < n_steps[:, None])[..., None]
        inverse = np.full(all_t.shape, -1, dtype=np.int64)
        np.put_along_axis(
            inverse, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1
        )
        offset = 1 + h.times.shape[1]
        pos = inverse[:, offset : offset + K]
        kw = {"dtype": model.dtype, "device": model.device}
        u = model.exposure(self.interventions, self.individuals, packed)
        with torch.no_grad():
            res = kalman_filter(
                module.dynamics,
                torch.as_tensor(np.nan_to_num(yy), **kw),
                model.internal_times(packed),
                module.emission.H,
                module.emission.R,
                mask=torch.as_tensor(mm, device=model.device),
                obs_offset=module.emission.c,
                init_mean=self.prior_mean.to(model.dtype),
                init_cov=self.prior_cov.to(model.dtype),
                inputs=u,
            )
            sm = rts_smoother(res)
        idx = torch.as_tensor(np.clip(pos, 0, None), device=model.device)
        rows = torch.arange(N, device=model.device)[:, None]
        means, covs = sm.mean[rows, idx], sm.cov[rows, idx]
        bad = torch.as_tensor(~ok_req | (pos < 0), device=model.device)
        means = torch.where(bad[..., None], torch.full_like(means, float("nan")), means)
        covs = torch.where(bad[..., None, None], torch.full_like(covs, float("nan")), covs)
        return means, covs

    def forecast(
        self,
        times: Any,
        *,
        relative_to: str = "reference",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        noise: bool = True,
        calibrated: bool = True,
        after_death: str = "nan",
    ) -> xr.Dataset:
        """Posterior predictive of every modelled feature at the given times.

        Parameters
        ----------
        times
            ``(K,)`` times shared by all individuals or ``(N, K)`` per individual, in
            days; or calendar dates (``Timestamp``/``datetime64``/ISO strings, for
            cohorts with a calendar), converted through each reference time.  A
            warning is raised when every time asked of a twin precedes its first
            observation (NaN there).
        relative_to
            ``"reference"``: days since each individual's reference time (the cohort's
            ``visit_t`` axis); ``"last"``: days after each twin's current time.
        quantiles
            Quantile levels of the predictive.
        noise
            Include the measurement noise (the predictive of a new measurement;
            default) or not (the noise-free signal ``H z + c``).
        calibrated
            Apply the model's forecast calibration
            (:meth:`DynamicTwinModel.calibrate_forecast`), if it has one, to the
            predictive of a new measurement.
        after_death
            ``"nan"`` (default): times after an individual's recorded death
            (:attr:`death_time`) are NaN, with a warning; ``"keep"``: forecast them
            anyway (e.g. to compare with the population's course).

        Returns
        -------
        xarray.Dataset
            Dims ``(individual, time)``; per feature ``<f>`` (predictive mean in data
            units), ``<f>_sd`` and ``<f>_q05``, ``<f>_q50``, ``<f>_q95`` (one per
            level). Coordinate ``t`` ``(individual, time)`` holds the absolute times
            (days since reference) and ``date`` the calendar times where known.
            Times after the current time are exact predictions from the current
            posterior; earlier times are smoothed over the whole record (linear
            dynamics); times before an individual's first observation are NaN.

        Notes
        -----
        Quantiles are exact (monotone transforms of Gaussian quantiles); the mean and
        sd of ``log``/``log1p`` features use the log-normal formulas.
        """
        check_quantiles(quantiles)
        absolute, given, shared = self._requested_times(times, relative_to)
        self._warn_before_first_observation(absolute, relative_to)
        with self.model.threads():
            m, P = self._latent_at(absolute)
        scale = self.model.forecast_scale if (noise and calibrated) else None
        ds = self._decode(m, P, absolute, given, shared, relative_to, quantiles, noise, scale)
        return self._mask_after_death(ds, absolute, after_death)

    def _mask_after_death(self, ds: xr.Dataset, absolute: np.ndarray, mode: str) -> xr.Dataset:
        """``ds`` with the times after each individual's recorded death set to NaN."""
        if mode not in ("nan", "keep"):
            raise ValueError(f"after_death must be 'nan' or 'keep', got {mode!r}")
        after = absolute > self.death_cutoff[:, None]  # False where no death is recorded
        ds.attrs["after_death"] = mode
        if mode == "keep" or not after.any():
            return ds
        who = after.any(axis=1)
        warnings.warn(
            f"{int(who.sum())} twin(s) have a recorded death before some asked times"
            f"{self.undated_death_note(who)}, "
            f"e.g. {self.individuals[who][0]!r}: the forecast is NaN after it "
            "(after_death='keep' forecasts it anyway)",
            UserWarning,
            stacklevel=3,
        )
        alive = xr.DataArray(~after, dims=("individual", "time"))
        return ds.where(alive)

    def _decode(
        self,
        m: torch.Tensor,
        P: torch.Tensor,
        absolute: np.ndarray,
        given: np.ndarray,
        shared: bool,
        relative_to: str,
        quantiles: Sequence[float],
        noise: bool,
        sd_scale: np.ndarray | None = None,
    ) -> xr.Dataset:
        model = self.model
        module = model._require_fitted()
        with torch.no_grad():
            ym, yv = module.emission.moments(m, P, noise=noise)
        ym, yv = ym.double().cpu().numpy(), yv.double().cpu().numpy()
        if sd_scale is not None:  # on the model scale, so log features stay exact
            yv = yv * np.asarray(sd_scale, dtype=float) ** 2
        qs = [float(q) for q in quantiles]
        mean, sd, qvals = model.transform.moments(ym, yv, qs)
        K = absolute.shape[1]
        time_coord = given if (shared and given.ndim == 1) else np.arange(K)
        coords: dict[str, Any] = {
            "individual": ("individual", self.individuals),
            "time": ("time", time_coord),
            "t": (("individual", "time"), absolute),
        }
        ref = self.reference_time
        if np.issubdtype(ref.dtype, np.datetime64) and not np.isnat(ref).all():
            dates = ref[:, None] + (absolute * 86400e9).astype("timedelta64[ns]")
            coords["date"] = (("individual", "time"), dates)
        data_vars = {}
        dims = ("individual", "time")
        for f, name in enumerate(self.feature_names):
            data_vars[name] = (dims, mean[..., f])
            data_vars[f"{name}_sd"] = (dims, sd[..., f])
            for q, qv in zip(qs, qvals, strict=True):
                data_vars[f"{name}_{quantile_name(q)}"] = (dims, qv[..., f])
        ds = xr.Dataset(data_vars, coords=coords)
        for name, info in model.feature_schemas.items():
            ds[name].attrs["units"] = info.unit
        ds.attrs.update(
            {
                "relative_to": relative_to,
                "quantiles": qs,
                "noise": int(noise),
                "calibrated": int(sd_scale is not None),
                "schema_hash": model.schema.hash(),
            }
        )
        return ds

    # ------------------------------------------------------------------ updating
    def update(self, new_observations: Cohort) -> DynamicTwins:
        """Twins refined by new observations: exact filtering from the current posterior.

        Only observations after each twin's current time are used (earlier ones, and
        any within :data:`SAME_TIME` of it, are taken as already known), so passing the
        full updated record, or an export overlapping the last one, is fine.  A death recorded in ``new_observations`` (covariate ``deceased``) is
        taken over; one the twins already have is kept when the new data have none, and
        a dated one is kept when the new data report the death without a date.
        Times are matched by calendar date: a new export with its own reference time (e.g. a FHIR bundle of recent records, read alone) is moved
        onto the twins' reference time first.  Individuals are matched by id; twins
        absent from ``new_observations`` are unchanged. Interventions of the new cohort are added to the recorded ones
        (they drive the state between the current time and the new observations).
        The parameters are not retrained.

        Returns
        -------
        DynamicTwins
            New twins; with no new observation the posterior is identical.
        """
        model = self.model
        module = model._require_fitted()
        new_observations = model.conformed(new_observations)
        pos = self._positions(np.asarray(new_observations.individuals).astype(str))
        new_observations = self._on_own_clock(new_observations, pos)
        current = self.time[pos]
        # a twin with no observation yet holds the initial-state prior, which applies at
        # its first observation (as in instantiate): filter from there, keep every reading
        fresh = ~self.history.mask[pos].any(axis=(1, 2))
        after = np.where(fresh, -np.inf, current + SAME_TIME)
        start = np.where(fresh, np.nan, current)
        new_iv = model._interventions(new_observations)
        table = pd.concat([self.interventions, new_iv], ignore_index=True)
        if len(table):
            # a course seen again in a later export (same agent, dose, interval, and start
            # to within SAME_TIME) is one course, in the later export's version: an
            # ongoing one may have ended since
            keyed = table.assign(_start=(table["start_t"].astype(float) / SAME_TIME).round())
            key = ["individual", "agent", "_start", "dose", "interval"]
            table = keyed.drop_duplicates(subset=key, keep="last").drop(columns="_start")
            table = table.reset_index(drop=True)
        ids = set(new_observations.individuals.astype(str))
        sub_iv = table[table["individual"].astype(str).isin(ids)]
        seq = model.sequences(new_observations, after=after, start=start, interventions=sub_iv)
        has_new = seq.mask.any(-1).any(-1)
        kw = {"dtype": model.dtype, "device": model.device}
        idx = torch.as_tensor(pos, device=model.device)
        u = model.exposure(sub_iv, new_observations.individuals, seq.times)
        with torch.no_grad(), model.threads():
            res = filter_states(
                module.dynamics,
                module.emission,
                torch.as_tensor(np.nan_to_num(seq.y), **kw),
                model.internal_times(seq.times),
                torch.as_tensor(seq.mask, device=model.device),
                self.mean[idx].to(model.dtype),
                self.cov[idx].to(model.dtype),
                u,
                n_samples=int(model.neural.get("n_samples", 256)),
            )
        new = torch.as_tensor(has_new, device=model.device)
        mean, cov = self.mean.clone(), self.cov.clone()
        mean[idx] = torch.where(
            new[:, None], res.filtered_mean[:, -1].to(mean.dtype), self.mean[idx]
        )
        cov[idx] = torch.where(
            new[:, None, None], res.filtered_cov[:, -1].to(cov.dtype), self.cov[idx]
        )
        time = self.time.copy()
        time[pos] = np.where(has_new, seq.times[:, -1], current)
        # the history grows by the new observations
        obs = model.sequences(new_observations, after=after, events=False)
        N, F = len(self), model.n_features
        T2 = obs.times.shape[1]
        full = Sequences(
            np.zeros((N, T2)),
            np.full((N, T2, F), np.nan),
            np.zeros((N, T2, F), dtype=bool),
            np.zeros(N, dtype=np.int64),
        )
        full.times[pos], full.y[pos], full.mask[pos], full.n_steps[pos] = (
            obs.times,
            obs.y,
            obs.mask,
            obs.n_steps,
        )
        history = Sequences.concatenate(self.history, full)
        prior_time = self.prior_time.copy()
        first = obs.first_observed_time()
        prior_time[pos] = np.where(fresh & np.isfinite(first), first, prior_time[pos])
        death = self.death_time.copy()
        reported = new_observations.death_t.to_numpy()
        # a dated death is taken over; an undated one only where none was known
        take = np.isfinite(reported) | (np.isneginf(reported) & np.isnan(death[pos]))
        death[pos] = np.where(take, reported, death[pos])
        return DynamicTwins(
            model,
            individuals=self.individuals,
            time=time,
            mean=mean,
            cov=cov,
            history=history,
            prior_mean=self.prior_mean,
            prior_cov=self.prior_cov,
            prior_time=prior_time,
            interventions=table,
            reference_time=self.reference_time,
            death_time=death,
        )

    def _on_own_clock(self, cohort: Cohort, pos: np.ndarray) -> Cohort:
        """``cohort`` with the twins' reference times, so its times count from the same zero.

        A new export read on its own (a FHIR bundle of the last months) starts its clock
        at its own first record; without this, every new reading would look older than
        the twin's current time and be ignored.
        """
        mine = pd.Series(self.reference_time[pos], index=self.individuals[pos].astype(str))
        theirs = cohort.reference_time
        theirs.index = theirs.index.astype(str)
        mine_nat, theirs_nat = pd.isna(mine).to_numpy(), pd.isna(theirs).to_numpy()
        if (mine_nat != theirs_nat).any():
            who = mine.index[mine_nat != theirs_nat][:5].tolist()
            raise ValueError(
                f"individuals {who}: the twins and the new observations do not both have "
                "calendar dates, so their times cannot be matched; give the new "
                "observations as dates (or both as days since the same reference)"
            )
        differ = ~mine_nat & (mine.to_numpy() != theirs.to_numpy())
        if not differ.any():
            return cohort
        return cohort.with_reference_time(mine[differ])

    # ------------------------------------------------------------------ scenarios and plots
    def simulate(
        self, scenarios: Any, n_draws: int = 200, seed: int = 0, **options: Any
    ) -> xr.Dataset:
        """Trajectories of every twin under every scenario; see :func:`twin.simulation.simulate_twins`.

        A convenience wrapper: the batched engine lives in :mod:`twin.simulation`.
        """
        from twin.simulation import simulate_twins

        return simulate_twins(self, scenarios, n_draws=n_draws, seed=seed, **options)

    def plot(self, individual: Any, feature: str, **options: Any):
        """Observations, forecast and 90 % bands of one twin; see :func:`twin.plot.plot_twin`."""
        from twin.plot import plot_twin

        return plot_twin(self, individual, feature, **options)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        n_obs = int(self.history.mask.sum())
        lines = [
            f"<twin.DynamicTwins: {len(self)} individuals, latent_dim {self.latent_dim}, "
            f"{n_obs:,} observations of {len(self.feature_names)} features>"
        ]
        if len(self):
            t = self.time
            lines.append(
                f"  current time (days since reference): median {np.median(t):g}, range {t.min():g} to {t.max():g}"
            )
            sd = torch.diagonal(self.cov, dim1=-2, dim2=-1).clamp_min(0).sqrt().mean().item()
            lines.append(f"  mean posterior sd of the latent state: {sd:.3f}")
        agents = self.model.agents or []
        if agents:
            lines.append(f"  agents: {', '.join(agents[:6])}{', ...' if len(agents) > 6 else ''}")
        ids = ", ".join(map(str, self.individuals[:3])) + (", ..." if len(self) > 3 else "")
        lines.append(f"  individuals: {ids}")
        return "\n".join(lines)


def _as_dates(times: Any) -> np.ndarray | None:
    """``times`` as datetime64[ns] if they are dates (Timestamps, datetime64, date strings)."""
    if isinstance(times, pd.Timestamp | np.datetime64 | str):
        times = [times]
    if isinstance(times, pd.Series | pd.Index):
        times = times.to_numpy()
    arr = np.asarray(times)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ns]")
    if arr.dtype == object or arr.dtype.kind in "US":
        flat = arr.ravel()
        if flat.size and all(isinstance(v, pd.Timestamp | np.datetime64 | str) for v in flat):
            try:
                parsed = pd.to_datetime(flat, utc=True).tz_localize(None)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"forecast times look like dates but do not parse: {exc}") from exc
            return parsed.to_numpy(dtype="datetime64[ns]").reshape(arr.shape)
    return None
