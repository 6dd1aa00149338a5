"""Cohort -> padded, time-sorted observation sequences for the latent dynamic model.

The dynamic model reads the modelled longitudinal features of a cohort as, per
individual, a sorted sequence of *steps* (a time, standardised values and a mask).
Visits without any modelled feature are dropped; intervention start/stop times can
be added as unobserved steps, so that a ``"step"`` exposure is constant within every
step and the piecewise-constant-input discretisation is exact. Sequences of
different lengths are padded at the end by repeating the last time with nothing
observed: a zero gap is an exact identity of the transition and an unobserved step
is a pure prediction, so padding never changes a filter's result.

Everything is vectorised over individuals (one ``argsort`` per call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from twin.cohort import Cohort

__all__ = [
    "Sequences",
    "extract_observations",
    "intervention_event_times",
    "pack_steps",
]


@dataclass
class Sequences:
    """Padded observation sequences of ``N`` individuals.

    Attributes
    ----------
    times : numpy.ndarray
        ``(N, T)`` sorted step times (days since each reference time); padding
        repeats the last time.
    y : numpy.ndarray
        ``(N, T, F)`` standardised values, NaN where unobserved.
    mask : numpy.ndarray
        ``(N, T, F)`` bool, True where observed.
    n_steps : numpy.ndarray
        ``(N,)`` number of real (non-padding) steps.
    """

    times: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    n_steps: np.ndarray

    def __len__(self) -> int:
        return self.times.shape[0]

    @property
    def n_observations(self) -> int:
        return int(self.mask.sum())

    def take(self, idx: np.ndarray) -> Sequences:
        """Rows ``idx``, trimmed to their longest sequence."""
        n = self.n_steps[idx]
        T = max(1, int(n.max())) if len(n) else 1
        return Sequences(
            self.times[idx, :T], self.y[idx, :T], self.mask[idx, :T], self.n_steps[idx]
        )

    def last_observed_time(self) -> np.ndarray:
        """``(N,)`` time of the last step with an observation (NaN if none)."""
        obs = self.mask.any(-1)
        t = np.where(obs, self.times, -np.inf).max(axis=1) if self.times.size else np.zeros(0)
        return np.where(np.isinf(t), np.nan, t)

    def first_observed_time(self) -> np.ndarray:
        obs = self.mask.any(-1)
        t = np.where(obs, self.times, np.inf).min(axis=1) if self.times.size else np.zeros(0)
        return np.where(np.isinf(t), np.nan, t)

    @staticmethod
    def concatenate(a: Sequences, b: Sequences) -> Sequences:
        """Per individual, the steps of ``a`` then those of ``b`` (same individuals), re-sorted."""
        times = np.concatenate([a.times, b.times], axis=1)
        valid = np.concatenate(
            [_real(a.n_steps, a.times.shape[1]), _real(b.n_steps, b.times.shape[1])], axis=1
        )
        order, n_steps, packed = pack_steps(times, valid)
        y = np.take_along_axis(np.concatenate([a.y, b.y], axis=1), order[..., None], axis=1)
        mask = np.take_along_axis(
            np.concatenate([a.mask, b.mask], axis=1), order[..., None], axis=1
        )
        pad = ~_real(n_steps, packed.shape[1])
        mask = mask & ~pad[..., None]
        y = np.where(mask, y, np.nan)
        return Sequences(packed, y, mask, n_steps)


def _real(n_steps: np.ndarray, T: int) -> np.ndarray:
    return np.arange(T)[None, :] < n_steps[:, None]


def pack_steps(times: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort the valid entries of each row of ``times (N, M)`` to the front.

    Returns
    -------
    order : numpy.ndarray
        ``(N, T)`` column indices into ``times`` (``T = max(1, max valid per row)``);
        padding positions point at an arbitrary (invalid or repeated) column.
    n_steps : numpy.ndarray
        ``(N,)`` valid entries per row.
    packed : numpy.ndarray
        ``(N, T)`` sorted times, padded by repeating the last valid time (0 if none).
    """
    N = times.shape[0]
    valid = valid & np.isfinite(times)
    keys = np.where(valid, times, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")
    n_steps = valid.sum(axis=1)
    T = max(1, int(n_steps.max())) if N else 1
    if order.shape[1] < T:  # only when M == 0
        order = np.zeros((N, T), dtype=np.int64)
        keys = np.full((N, 1), np.inf)
    order = order[:, :T]
    packed = np.take_along_axis(keys, order, axis=1)
    last = np.where(
        n_steps > 0,
        np.take_along_axis(packed, np.clip(n_steps - 1, 0, T - 1)[:, None], axis=1)[:, 0],
        0.0,
    )
    packed = np.where(np.isfinite(packed), packed, last[:, None])
    return order, n_steps, packed


def extract_observations(
    cohort: Cohort, features: Sequence[tuple[str, str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visit times ``(N, V)``, values ``(N, V, F)`` and mask ``(N, V, F)`` of the modelled features.

    ``features`` lists ``(modality, feature)`` pairs; a pair the cohort lacks is
    entirely unobserved (the schema check happens before, in the model).
    """
    N = len(cohort)
    t = cohort.times()
    V = t.shape[1] if t.ndim == 2 else 0
    values = np.full((N, V, len(features)), np.nan)
    mask = np.zeros((N, V, len(features)), dtype=bool)
    by_modality: dict[str, list[tuple[int, str]]] = {}
    for j, (m, f) in enumerate(features):
        by_modality.setdefault(m, []).append((j, f))
    for m, items in by_modality.items():
        if m not in cohort.longitudinal_modalities:
            continue
        names = pd.Index(cohort.data[f"{m}_feature"].values.astype(str))
        pos = names.get_indexer([f for _, f in items])
        cols = np.array([j for j, _ in items])
        have = pos >= 0
        if have.any():
            values[:, :, cols[have]] = cohort.values(m)[:, :, pos[have]]
            mask[:, :, cols[have]] = cohort.mask(m)[:, :, pos[have]]
    mask &= np.isfinite(t)[..., None] & ~np.isnan(values)
    return np.where(np.isfinite(t), t, np.nan), values, mask


def intervention_event_times(
    table: pd.DataFrame,
    individuals: Sequence[str],
    agents: Sequence[str],
    delays: dict[str, float] | None = None,
) -> np.ndarray:
    """Start and stop times ``(N, E)`` (NaN padded) of the given agents' interventions.

    These are the times where a ``"step"`` exposure changes; ``delays`` shifts each
    agent's times (an onset delay).
    """
    N = len(individuals)
    if len(table) == 0 or not len(agents) or N == 0:
        return np.full((N, 0), np.nan)
    delays = delays or {}
    rows = table[table["agent"].isin(list(agents))]
    idx = pd.Index(pd.Series(individuals).astype(str)).get_indexer(rows["individual"].astype(str))
    keep = idx >= 0
    rows, idx = rows[keep], idx[keep]
    if not len(rows):
        return np.full((N, 0), np.nan)
    shift = rows["agent"].map(lambda a: float(delays.get(a, 0.0))).to_numpy(dtype=np.float64)
    ev = np.concatenate(
        [
            rows["start_t"].to_numpy(dtype=np.float64) + shift,
            rows["end_t"].to_numpy(dtype=np.float64) + shift,
        ]
    )
    who = np.concatenate([idx, idx])
    ok = np.isfinite(ev)
    ev, who = ev[ok], who[ok]
    if not len(ev):
        return np.full((N, 0), np.nan)
    order = np.lexsort((ev, who))
    ev, who = ev[order], who[order]
    rank = np.arange(len(ev)) - np.searchsorted(who, who, side="left")
    out = np.full((N, int(rank.max()) + 1), np.nan)
    out[who, rank] = ev
    return out
