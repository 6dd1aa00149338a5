"""Intervention exposure ``u(t)`` from dosing schedules.

A schedule gives one agent's administrations: from ``start`` until ``stop``
(None/inf/NaN: open-ended), ``dose`` per administration, repeated every
``interval`` days (None/NaN: continuous). Two pharmacological kernels turn it into
an exposure curve:

``"step"``
    ``u(t) = dose`` while an administration is active, else 0. Continuous
    schedules are active on ``[start, stop)``; periodic ones on
    ``[start + j*interval, start + j*interval + duration)`` for every ``j`` with
    ``start + j*interval < stop`` (cut at ``stop``; ``duration`` defaults to one day,
    capped at ``interval``). A continuous schedule with a ``duration`` is a single
    pulse.
``"bolus"``
    Each administration at ``t_j = start + j*interval < stop`` (a single one at
    ``start`` when ``interval`` is None) adds ``dose * exp(-k (t - t_j))`` for
    ``t >= t_j``, ``k = ln 2 / half_life`` (first-order elimination; doses given
    before ``stop`` keep decaying after it). The sum over doses is evaluated in
    closed form (a geometric series), so the cost does not grow with the number
    of doses.

Exposures on a grid come in two modes. ``"point"`` evaluates ``u(t_k)``.
``"average"`` (default) gives the mean of ``u`` over the step ``[t_k, t_{k+1})``,
computed exactly from the cumulative exposure, which is the value that makes the
piecewise-constant input of :mod:`twin.dynamics.linear_gaussian` deliver the right
total dose even when a pulse is shorter than the grid step; the last grid point
(no step after it) and zero-length steps use the point value.

Everything is vectorised in torch and broadcasts: schedule parameters may be
tensors of shape ``(...)`` broadcasting against the batch shape of ``times (..., T)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "KERNELS",
    "exposure_from_interventions",
    "exposure_from_table",
    "schedule_exposure",
]

#: Supported pharmacological kernels.
KERNELS = ("step", "bolus")

_Num = float | Tensor | None


def _param(x: _Num, like: Tensor, default: float) -> Tensor:
    """Schedule parameter as a tensor ``(..., 1)`` broadcasting against ``times (..., T)``;
    None and NaN become ``default``."""
    t = torch.as_tensor(default if x is None else x, dtype=like.dtype, device=like.device)
    t = torch.where(torch.isnan(t), torch.full_like(t, default), t)
    return t[..., None]


def _step_cumulative(x: Tensor, interval: Tensor, duration: Tensor) -> Tensor:
    """``int_0^x 1[(s mod interval) < duration] ds`` for ``x >= 0`` (inf interval: one pulse)."""
    periodic = torch.isfinite(interval)
    tau = torch.where(periodic, interval, torch.ones_like(interval))
    n_full = torch.floor(x / tau)
    periodic_part = n_full * duration + torch.minimum(x - n_full * tau, duration)
    single = torch.minimum(x, duration)
    return torch.where(periodic, periodic_part, single)


def _bolus_terms(
    t: Tensor, start: Tensor, stop: Tensor, interval: Tensor, rate: Tensor
) -> tuple[Tensor, Tensor]:
    """Number of doses given by ``t`` and ``sum_j exp(-rate (t - t_j))`` over them."""
    periodic = torch.isfinite(interval)
    tau = torch.where(periodic, interval, torch.ones_like(interval))
    since = t - start
    # Doses before stop: j = 0 .. n_max-1 with start + j*tau < stop.
    n_max = torch.where(
        periodic,
        torch.ceil((stop - start) / tau).clamp_min(0),
        (stop > start).to(t.dtype),
    )
    n_given = torch.where(periodic, torch.floor(since / tau) + 1, torch.ones_like(since))
    n = torch.where(since >= 0, torch.minimum(n_given, n_max), torch.zeros_like(since))
    last = start + (n - 1).clamp_min(0) * tau
    decay = torch.exp(-rate * (t - last).clamp_min(0))
    # sum_{i=0}^{n-1} exp(-rate tau i) = (1 - exp(-rate tau n)) / (1 - exp(-rate tau))
    geom = torch.expm1(-rate * tau * n) / torch.expm1(-rate * tau)
    geom = torch.where(periodic, geom, n)
    return n, torch.where(n > 0, decay * geom, torch.zeros_like(decay))


def schedule_exposure(
    times: Tensor,
    start: _Num = 0.0,
    stop: _Num = None,
    dose: _Num = 1.0,
    interval: _Num = None,
    *,
    kernel: str = "step",
    half_life: _Num = None,
    duration: _Num = None,
    mode: str = "average",
) -> Tensor:
    """Exposure of one schedule on a time grid.

    Parameters
    ----------
    times : Tensor
        ``(..., T)`` sorted times (days), floating point.
    start, stop : float or Tensor
        Active window; ``stop`` None/inf/NaN is open-ended.
    dose : float or Tensor
        Amount per administration (the exposure height for ``"step"``).
    interval : float or Tensor, optional
        Days between administrations; None/NaN: continuous (``"step"``) or a
        single dose (``"bolus"``).
    kernel : {"step", "bolus"}
        See the module docstring.
    half_life : float or Tensor, optional
        Elimination half-life (days) of the ``"bolus"`` kernel (required there).
    duration : float or Tensor, optional
        Length of each periodic ``"step"`` administration (default 1 day, capped at
        ``interval``). For a continuous schedule it makes a single pulse.
    mode : {"average", "point"}
        Step-averaged (default) or pointwise exposure, see the module docstring.

    Returns
    -------
    Tensor
        Shape ``broadcast(times.shape, param_shape + (1,))``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if mode not in ("average", "point"):
        raise ValueError(f"mode must be 'average' or 'point', got {mode!r}")
    times = torch.as_tensor(times)
    if not times.is_floating_point():
        times = times.to(torch.get_default_dtype())
    start_ = _param(start, times, 0.0)
    stop_ = _param(stop, times, math.inf)
    dose_ = _param(dose, times, 1.0)
    interval_ = _param(interval, times, math.inf)
    if kernel == "step":
        return _step_exposure(times, start_, stop_, dose_, interval_, duration, mode)
    if half_life is None:
        raise ValueError("the 'bolus' kernel needs a half_life (days)")
    rate = math.log(2.0) / _param(half_life, times, math.nan)
    return _bolus_exposure(times, start_, stop_, dose_, interval_, rate, mode)


def _step_exposure(
    times: Tensor,
    start: Tensor,
    stop: Tensor,
    dose: Tensor,
    interval: Tensor,
    duration: _Num,
    mode: str,
) -> Tensor:
    # None/NaN duration: one day for periodic schedules, the whole window otherwise.
    dur = _param(duration, times, math.nan)
    default = torch.where(torch.isfinite(interval), torch.ones_like(interval), interval)
    dur = torch.minimum(torch.where(torch.isnan(dur), default, dur), interval)

    def cumulative(t: Tensor) -> Tensor:
        x = torch.minimum(t, stop) - start
        return _step_cumulative(x.clamp_min(0), interval, dur)

    def point(t: Tensor) -> Tensor:
        periodic = torch.isfinite(interval)
        tau = torch.where(periodic, interval, torch.ones_like(interval))
        since = t - start
        phase = torch.where(periodic, since - torch.floor(since / tau) * tau, since)
        on = (since >= 0) & (t < stop) & (phase < dur)
        return on.to(t.dtype)

    out = point(times)
    if mode == "average":
        out = _step_average(times, cumulative, out)
    return dose * out


def _step_average(times: Tensor, cumulative: Any, point_values: Tensor) -> Tensor:
    """Replace point values by step averages ``(C(t_{k+1}) - C(t_k)) / dt`` where ``dt > 0``."""
    if times.shape[-1] < 2:
        return point_values
    C = cumulative(times)
    C, point_values = torch.broadcast_tensors(C, point_values)
    t = times.expand_as(C)
    dt = t[..., 1:] - t[..., :-1]
    dC = C[..., 1:] - C[..., :-1]
    safe = torch.where(dt > 0, dt, torch.ones_like(dt))
    avg = torch.where(dt > 0, dC / safe, point_values[..., :-1])
    return torch.cat([avg, point_values[..., -1:]], dim=-1)


def _bolus_exposure(
    times: Tensor,
    start: Tensor,
    stop: Tensor,
    dose: Tensor,
    interval: Tensor,
    rate: Tensor,
    mode: str,
) -> Tensor:
    def cumulative(t: Tensor) -> Tensor:
        # int_{-inf}^t sum_j exp(-k (s - t_j)) ds = (n(t) - sum_j exp(-k (t - t_j))) / k
        n, s = _bolus_terms(t, start, stop, interval, rate)
        return (n - s) / rate

    _, out = _bolus_terms(times, start, stop, interval, rate)
    if mode == "average":
        out = _step_average(times, cumulative, out)
    return dose * out


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def exposure_from_interventions(
    interventions: Sequence[Any],
    agents: Sequence[str],
    times: Tensor,
    *,
    mode: str = "average",
) -> Tensor:
    """Exposure ``(..., T, P)`` of a list of interventions on a grid ``times (..., T)``.

    Each intervention is any object (e.g. :class:`twin.scenario.Intervention`) or dict
    with ``agent``, ``dose``, ``start``, ``stop``, ``interval`` and optionally
    ``kernel``, ``half_life``, ``duration``. Exposures of the same agent add up.
    Agents absent from ``agents`` raise a ``KeyError``.
    """
    times = torch.as_tensor(times)
    if not times.is_floating_point():
        times = times.to(torch.get_default_dtype())
    index = {a: i for i, a in enumerate(agents)}
    out = times.new_zeros((*times.shape, len(index)))
    for iv in interventions:
        agent = _get(iv, "agent")
        if agent not in index:
            raise KeyError(f"agent {agent!r} is not in the agent vocabulary {list(agents)}")
        u = schedule_exposure(
            times,
            start=_get(iv, "start", 0.0),
            stop=_get(iv, "stop"),
            dose=_get(iv, "dose", 1.0),
            interval=_get(iv, "interval"),
            kernel=_get(iv, "kernel") or "step",
            half_life=_get(iv, "half_life"),
            duration=_get(iv, "duration"),
            mode=mode,
        )
        out[..., index[agent]] += u
    return out


def exposure_from_table(
    table: Any,
    individuals: Sequence[Any],
    agents: Sequence[str],
    times: Tensor,
    *,
    kernels: dict[str, str] | None = None,
    half_lives: dict[str, float] | None = None,
    durations: dict[str, float] | None = None,
    mode: str = "average",
) -> Tensor:
    """Exposure tensor ``(N, T, P)`` from a table of interventions.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per intervention with columns ``individual``, ``agent``,
        ``start_t``, ``end_t``, ``dose``, ``interval`` (days relative to each
        individual's reference time; NaN ``end_t``: ongoing; NaN ``interval``:
        continuous; NaN ``dose``: 1). Optional columns ``kernel``, ``half_life`` and
        ``duration`` override the per-agent dictionaries below. Other columns (the
        Cohort table's ``system``, ``unit``, ...) are ignored.
    individuals : sequence
        Ordered individual ids (axis ``N``); rows of other individuals are ignored.
    agents : sequence of str
        Agent vocabulary (axis ``P``); rows of other agents are ignored.
    times : Tensor
        ``(N, T)`` grid per individual (or ``(T,)`` shared).
    kernels, half_lives, durations : dict, optional
        Per-agent kernel (default ``"step"``), bolus half-life and step duration.
    mode : {"average", "point"}
        See :func:`schedule_exposure`.

    Returns
    -------
    Tensor
        ``(N, T, P)`` in ``times``' dtype and device; rows of one individual and agent add.
    """
    import numpy as np

    times = torch.as_tensor(times)
    if not times.is_floating_point():
        times = times.to(torch.get_default_dtype())
    N, P = len(individuals), len(agents)
    if times.dim() == 1:
        times = times.expand(N, -1)
    if times.shape[0] != N:
        raise ValueError(f"times has {times.shape[0]} rows for {N} individuals")
    T = times.shape[-1]
    out = times.new_zeros((N, T, P))
    if len(table) == 0 or N == 0 or P == 0:
        return out
    missing = {"individual", "agent", "start_t", "end_t", "dose", "interval"} - set(table.columns)
    if missing:
        raise ValueError(f"intervention table lacks columns {sorted(missing)}")
    ind_index = {v: i for i, v in enumerate(individuals)}
    agent_index = {a: i for i, a in enumerate(agents)}
    ind = table["individual"].map(ind_index)
    ag = table["agent"].map(agent_index)
    keep = (ind.notna() & ag.notna()).to_numpy()
    if not keep.any():
        return out
    rows = table.loc[keep]
    ind_i = torch.as_tensor(np.array(ind[keep], dtype=np.int64), device=times.device)
    ag_i = torch.as_tensor(np.array(ag[keep], dtype=np.int64), device=times.device)
    agent_names = rows["agent"].to_numpy()

    def column(name: str, per_agent: dict[str, Any] | None, default: Any) -> list[Any]:
        """Per-row value: the table's column where given, else the agent's entry."""
        per_agent = per_agent or {}
        vals = [per_agent.get(a, default) for a in agent_names]
        if name in rows.columns:
            for i, v in enumerate(rows[name].tolist()):
                if v is not None and v == v:  # not None / NaN
                    vals[i] = v
        return vals

    def num(values: Any) -> Tensor:
        arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        return torch.as_tensor(arr, dtype=times.dtype, device=times.device)

    start, stop = num(rows["start_t"].tolist()), num(rows["end_t"].tolist())
    dose, interval = num(rows["dose"].tolist()), num(rows["interval"].tolist())
    kernel = np.asarray(column("kernel", kernels, "step"), dtype=object)
    half_life = num(column("half_life", half_lives, None))
    duration = num(column("duration", durations, None))
    grid = times[ind_i]  # (rows, T)
    unknown = sorted(set(kernel) - set(KERNELS))
    if unknown:
        raise ValueError(f"unknown exposure kernels {unknown}; known: {KERNELS}")
    u = grid.new_zeros(grid.shape)
    is_step = torch.as_tensor(kernel == "step", device=times.device)
    if bool(is_step.any()):
        m = is_step
        u[m] = schedule_exposure(
            grid[m], start[m], stop[m], dose[m], interval[m], duration=duration[m], mode=mode
        )
    if bool((~is_step).any()):
        m = ~is_step
        if bool(torch.isnan(half_life[m]).any()):
            raise ValueError("bolus interventions need a half_life (column or half_lives)")
        u[m] = schedule_exposure(
            grid[m],
            start[m],
            stop[m],
            dose[m],
            interval[m],
            kernel="bolus",
            half_life=half_life[m],
            mode=mode,
        )
    flat = out.view(N * T, P)
    row_idx = (ind_i[:, None] * T + torch.arange(T, device=times.device)).reshape(-1)
    col_idx = ag_i[:, None].expand(-1, T).reshape(-1)
    flat.index_put_((row_idx, col_idx), u.reshape(-1), accumulate=True)
    return out
