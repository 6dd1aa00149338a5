"""In-silico experiments on longitudinal twins: scenarios -> exposures -> batched draws.

:func:`simulate_twins` runs every twin under every scenario with ``n_draws`` posterior
draws each, in one batched engine:

1. **grid**: the union of the scenarios' output grids (days after each twin's current
   time, or days since its reference time with ``origin="reference"``), plus hidden
   steps at every intervention start/stop so step exposures are exact;
2. **exposure**: each scenario's interventions on that grid
   (:func:`twin.dynamics.exposure_from_interventions`; the model's per-agent onset
   delays apply), a tensor ``(S, T, P)`` or ``(N, S, T, P)``;
3. **latent draws**: the initial state is drawn from each twin's current posterior
   and propagated with the exact transitions by
   :func:`twin.dynamics.simulate_latent` (vectorised over individuals x scenarios x
   draws, memory-chunked; Euler–Maruyama draws for neural dynamics);
4. **read-out**: emission (plus measurement noise unless ``observation_noise=False``)
   and the inverse feature transform to data units.

No Python loop runs over individuals, scenarios or draws in the hot path; the time
recursion is the only loop. Individuals are processed in fixed blocks that depend on
the problem shape only, each with its own seed derived from ``seed``, so results are
reproducible and do not depend on ``max_elements``.

:func:`summarise_simulation` reduces draws to mean, sd and quantiles;
:func:`contrast` gives the difference between two scenarios with credible intervals,
per individual or averaged over individuals.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from twin.dynamics import exposure_from_interventions, psd_sqrt, simulate_latent
from twin.model.state_filter import is_linear
from twin.scenario import Scenario, load_scenarios

if TYPE_CHECKING:
    from twin.dynamic_twins import DynamicTwins

__all__ = ["contrast", "simulate_twins", "summarise_simulation"]

#: Elements (individuals x scenarios x draws x steps x max(D, F)) per RNG block.
_BLOCK_ELEMENTS = 2**22


def _as_scenarios(scenarios: Any) -> list[Scenario]:
    if isinstance(scenarios, str | os.PathLike):
        return load_scenarios(Path(scenarios))
    if isinstance(scenarios, Scenario):
        return [scenarios]
    out = list(scenarios)
    if not out:
        raise ValueError("give at least one scenario")
    for s in out:
        if not isinstance(s, Scenario):
            raise TypeError(f"expected twin.Scenario objects, got {type(s).__name__}")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique, got {names}")
    return out


def unknown_agents_message(
    scenario: str, unknown: Sequence[str], agents: Sequence[str], names: dict[str, str]
) -> str:
    """Scenario agents the model lacks, with codes whose display name matches and a short list."""
    lines = [f"scenario {scenario!r}: agents {list(unknown)} are not in the model"]
    for u in unknown:
        hits = [a for a in agents if u.strip().lower() in names.get(a, "").lower()]
        if hits:
            shown = ", ".join(f"{a!r} ({names[a]})" for a in hits[:5])
            lines.append(f"{u!r} matches the display name of agent code(s) {shown}")
    listed = ", ".join(repr(a) for a in list(agents)[:20])
    more = (
        f", ... ({len(agents)} in all; model.agent_names maps codes to names)"
        if len(agents) > 20
        else ""
    )
    lines.append(f"the model's agents: {listed or 'none'}{more}")
    return "; ".join(lines)


def _check_scenarios(
    scenarios: list[Scenario],
    agents: Sequence[str],
    exposure: dict | None = None,
    names: dict[str, str] | None = None,
) -> None:
    exposure = exposure or {}
    for s in scenarios:
        for iv in s.interventions:
            cfg = exposure.get(iv.agent, {})
            trained = (cfg.get("kernel", "step"), cfg.get("half_life"))
            if iv.agent in exposure and (iv.kernel, iv.half_life) != trained:
                warnings.warn(
                    f"scenario {s.name!r}: agent {iv.agent!r} has kernel {iv.kernel!r} "
                    f"(half-life {iv.half_life}), the model learned its effect with kernel "
                    f"{trained[0]!r} (half-life {trained[1]}); the simulated effect follows the "
                    "scenario's exposure curve",
                    stacklevel=3,
                )
        unknown = [a for a in s.agents if a not in agents]
        if unknown:
            raise ValueError(unknown_agents_message(s.name, unknown, agents, names or {}))
        if s.settings:
            raise ValueError(
                f"scenario {s.name!r} sets static settings {sorted(s.settings)}; the latent "
                "dynamic model has no static inputs, so they would be ignored"
            )


def _delayed(scenario: Scenario, delays: dict[str, float]) -> list[dict[str, Any]]:
    """The scenario's interventions as dicts, each agent's onset delay applied."""
    out = []
    for iv in scenario.interventions:
        d = delays.get(iv.agent, 0.0)
        out.append(
            {
                "agent": iv.agent,
                "dose": iv.dose,
                "start": iv.start + d,
                "stop": None if iv.stop is None else iv.stop + d,
                "interval": iv.interval,
                "kernel": iv.kernel,
                "half_life": iv.half_life,
                "duration": iv.duration,
            }
        )
    return out


def _block_generator(
    seed: int, block: int, device: torch.device, purpose: int = 0
) -> torch.Generator:
    """Generator of one block of individuals (``purpose`` 1: the parameter draws)."""
    if int(seed) < 0:
        raise ValueError("seed must be a non-negative integer")
    state = np.random.SeedSequence(int(seed), spawn_key=(purpose, int(block))).generate_state(
        2, dtype=np.uint32
    )
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return g


def _input_matrix_draws(
    module: torch.nn.Module, n_draws: int, seed: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``(R, D, P)`` draws of the input matrix from its posterior (the estimate if none)."""
    B = module.linear.B.detach().to(dtype)
    cov = module.B_cov.to(dtype)
    if not bool((cov != 0).any()):
        return B.expand(n_draws, *B.shape)
    g = _block_generator(seed, 0, device, purpose=1)
    eps = torch.randn((n_draws, B.numel()), generator=g, dtype=dtype, device=device)
    draws = B.reshape(-1) + eps @ psd_sqrt(cov).mT
    return draws.reshape(n_draws, *B.shape)


def _with_n(u: torch.Tensor) -> torch.Tensor:
    """Exposure with a leading individual axis: (S, T, P) -> (1, S, T, P)."""
    return u if u.dim() == 4 else u[None]


def _response(
    module: torch.nn.Module, times: torch.Tensor, u: torch.Tensor, B_draws: torch.Tensor
) -> torch.Tensor:
    """Exact state response ``(n|1, S, R, T, D)`` to the exposures ``u (n|1, S, T, P)``.

    ``r_{k+1} = F_k r_k + Gamma_k B_r u_k`` from ``r_0 = 0``: by linearity the state
    under a scenario is the natural course plus this deterministic response, so all
    scenarios share the natural course's draws (common random numbers).
    """
    lin = module.linear
    dt = times[..., 1:] - times[..., :-1]
    F, _, Gamma = lin.discretize(dt.to(lin.A.dtype))  # (T-1|n,T-1, D, D)
    F, Gamma = F.to(u.dtype), Gamma.to(u.dtype)
    drive = torch.einsum("rdp,nstp->nsrtd", B_draws, u[..., :-1, :])  # (n, S, R, T-1, D)
    if F.dim() == 3:
        F, Gamma = F[None], Gamma[None]  # (1, T-1, D, D)
    n, S, R, T1, D = drive.shape[0], drive.shape[1], drive.shape[2], u.shape[-2], drive.shape[-1]
    r = drive.new_zeros((n, S, R, D))
    out = [r]
    for k in range(T1 - 1):
        Fk = F[:, k][:, None, None]  # (n|1, 1, 1, D, D)
        Gk = Gamma[:, k][:, None, None]
        r = (Fk @ r.unsqueeze(-1)).squeeze(-1) + (Gk @ drive[:, :, :, k].unsqueeze(-1)).squeeze(-1)
        out.append(r)
    return torch.stack(out, dim=-2)


def simulate_twins(
    twins: DynamicTwins,
    scenarios: Scenario | Sequence[Scenario] | str | os.PathLike,
    *,
    n_draws: int = 200,
    seed: int = 0,
    origin: str = "current",
    observation_noise: bool = True,
    max_elements: int = 2**25,
    progress: bool = True,
    return_latent: bool = False,
    keep_recorded: bool = False,
) -> xr.Dataset:
    """Draw every twin's trajectories under every scenario.

    Parameters
    ----------
    twins
        :class:`~twin.dynamic_twins.DynamicTwins`.
    scenarios
        A :class:`~twin.Scenario`, a list of them, or a scenario YAML file.
    n_draws
        Draws per individual and scenario (each from the current posterior).
    seed
        Seed; the same seed gives the same draws whatever ``max_elements``.
    origin
        ``"current"``: scenario day 0 is each twin's current time (its last
        observation); ``"reference"``: scenario days are days since each
        individual's reference time (e.g. treatment start), and grid points before
        a twin's current time are NaN.
    observation_noise
        Add measurement noise (draws of new measurements; default) or return the
        noise-free signal.
    max_elements
        Memory bound of the latent simulator's working set (does not change results).
    progress
        Progress bar over blocks of individuals.
    return_latent
        Also return the latent draws ``z`` (individual, scenario, draw, time, latent).
    keep_recorded
        Continue each twin's recorded interventions (e.g. an ongoing treatment) in
        every scenario, the scenario's interventions added on top. By default a
        scenario replaces them: it states everything that is done from its origin.
        (The recorded ones' start/stop times are not added to the grid; their
        exposure is step-averaged.)

    Returns
    -------
    xarray.Dataset
        ``value`` with dims ``(individual, scenario, draw, time, feature)`` in data
        units; coordinates ``time`` (days after the origin), ``t`` (individual,
        time; days since reference), ``feature`` with ``modality`` and ``unit``.
    """
    model = twins.model
    module = model._require_fitted()
    scen = _as_scenarios(scenarios)
    agents = list(model.agents or [])
    _check_scenarios(scen, agents, model.agent_exposure, model.agent_names)
    if origin not in ("current", "reference"):
        raise ValueError(f"origin must be 'current' or 'reference', got {origin!r}")
    R = int(n_draws)
    if R < 1:
        raise ValueError("n_draws must be >= 1")
    delays = model._delays()
    ivs = [_delayed(s, delays) for s in scen]
    out_grid = np.unique(np.concatenate([s.times(dtype=torch.float64).numpy() for s in scen]))
    events = [
        e
        for group in ivs
        for iv in group
        for e in (iv["start"], iv["stop"])
        if e is not None and 0.0 < e < out_grid[-1]
    ]
    sim_grid = np.unique(np.concatenate([[0.0], out_grid, events]))
    if origin == "current":
        sim_grid = sim_grid[sim_grid >= 0]
    out_pos = np.searchsorted(sim_grid, out_grid)
    N, S, D, F = len(twins), len(scen), twins.latent_dim, model.n_features
    dtype, device = model.dtype, model.device
    unit = model.time_unit or 1.0
    current = twins.time
    linear = is_linear(module.dynamics)

    if origin == "current":
        # one grid in scenario time shared by everyone; absolute times are current + grid
        sim_times = sim_grid[None, :]
        absolute = current[:, None] + out_grid[None, :]
    else:
        # per individual: [current, max(grid, current), ...] in absolute time
        sim_times = np.concatenate(
            [current[:, None], np.maximum(sim_grid[None, :], current[:, None])], axis=1
        )
        out_pos = out_pos + 1
        absolute = np.broadcast_to(out_grid, (N, len(out_grid))).copy()
        absolute[out_grid[None, :] < current[:, None] - 1e-9] = np.nan
    T1 = sim_times.shape[1]
    B_draws = _input_matrix_draws(module, R, seed, dtype, device) if agents and linear else None

    recorded = bool(keep_recorded and agents and len(twins.interventions))

    def exposure(times: torch.Tensor, i0: int = 0, i1: int = 0) -> torch.Tensor | None:
        """(S, T, P) for a shared grid (T,), (n, S, T, P) for per-individual grids (n, T);
        with ``keep_recorded`` always (n, S, T, P), the recorded exposure added."""
        if not agents:
            return None
        dim = 0 if times.dim() == 1 else 1
        u = torch.stack([exposure_from_interventions(g, agents, times) for g in ivs], dim=dim)
        if recorded:
            absolute_t = (
                times + torch.as_tensor(current[i0:i1, None], dtype=dtype, device=device)
                if times.dim() == 1
                else times
            )
            rec = model.exposure(
                twins.interventions, twins.individuals[i0:i1], absolute_t.cpu().numpy()
            )
            u = (u if u.dim() == 4 else u[None]) + rec[:, None]
        return u

    shared_response = None
    if origin == "current" and B_draws is not None and not recorded:
        t = torch.as_tensor(sim_grid, dtype=dtype, device=device)
        shared_response = _response(module, t / unit, exposure(t)[None], B_draws)

    block = max(1, math.ceil(_BLOCK_ELEMENTS / (S * R * T1 * max(D, F))))
    values = np.empty((N, S, R, len(out_grid), F))
    latent = np.empty((N, S, R, len(out_grid), D)) if return_latent else None
    H = module.emission.H.detach().to(dtype)
    c = module.emission.c.detach().to(dtype)
    noise_sd = module.emission.R.detach().to(dtype).sqrt()
    pos_t = torch.as_tensor(out_pos, device=device)
    blocks = range(0, N, block)
    bar = tqdm(blocks, desc="simulate", disable=not progress or len(blocks) < 2, leave=False)
    with torch.no_grad(), model.threads():
        for b, i0 in enumerate(bar):
            i1 = min(N, i0 + block)
            n = i1 - i0
            g = _block_generator(seed, b, device)
            m0 = twins.mean[i0:i1].to(device=device, dtype=dtype)
            P0 = twins.cov[i0:i1].to(device=device, dtype=dtype)
            grid = sim_grid if origin == "current" else sim_times[i0:i1]
            abs_t = torch.as_tensor(grid, dtype=dtype, device=device)  # (T1,) or (n, T1)
            t_int = abs_t / unit
            if linear:
                # natural course (initial state + process noise), shared by all scenarios
                z = simulate_latent(
                    module.dynamics,
                    m0,
                    P0,
                    t_int,
                    None,
                    n_draws=R,
                    generator=g,
                    max_elements=max_elements,
                    rng_block=n,
                )  # (n, 1, R, T1, D)
                if B_draws is not None:
                    resp = (
                        shared_response
                        if shared_response is not None
                        else _response(module, t_int, _with_n(exposure(abs_t, i0, i1)), B_draws)
                    )
                    z = z + resp  # (n, S, R, T1, D)
                else:
                    z = z.expand(n, S, R, T1, D)
            else:
                eps = torch.randn((n, 1, R, D), generator=g, dtype=dtype, device=device)
                z0 = m0[:, None, None, :] + (
                    psd_sqrt(P0)[:, None, None] @ eps.unsqueeze(-1)
                ).squeeze(-1)
                z0 = z0.expand(n, S, R, D)
                tt = t_int if t_int.dim() == 1 else t_int[:, None, None, :]
                u = exposure(abs_t, i0, i1)
                if u is not None:
                    u = u[None, :, None] if u.dim() == 3 else u[:, :, None]
                z = module.dynamics.sample_paths(z0, tt, u, generator=g)
            z = z.index_select(-2, pos_t)  # (n, S, R, T, D)
            y = z @ H.mT + c
            if observation_noise:  # the same measurement noise in every scenario (paired draws)
                y = y + noise_sd * torch.randn(
                    (n, 1, R, len(out_grid), F), generator=g, dtype=dtype, device=device
                )
            values[i0:i1] = model.transform.decode(y.double().cpu().numpy())
            if latent is not None:
                latent[i0:i1] = z.double().cpu().numpy()
    if origin == "reference":
        before = out_grid[None, :] < current[:, None] - 1e-9  # (N, T)
        values[np.broadcast_to(before[:, None, None, :, None], values.shape)] = np.nan
        if latent is not None:
            latent[np.broadcast_to(before[:, None, None, :, None], latent.shape)] = np.nan
    modality = [m for m, _ in model.features]
    units = [model.schema[m].feature(f).unit for m, f in model.features]
    coords: dict[str, Any] = {
        "individual": ("individual", twins.individuals),
        "scenario": ("scenario", np.array([s.name for s in scen], dtype=object)),
        "draw": ("draw", np.arange(R)),
        "time": ("time", out_grid),
        "feature": ("feature", np.array(model.feature_names, dtype=object)),
        "modality": ("feature", np.array(modality, dtype=object)),
        "unit": ("feature", np.array(units, dtype=object)),
        "t": (("individual", "time"), absolute),
        "after_death": (("individual", "time"), _after_death(twins, absolute)),
    }
    data_vars = {"value": (("individual", "scenario", "draw", "time", "feature"), values)}
    if latent is not None:
        coords["latent"] = ("latent", np.arange(D))
        data_vars["z"] = (("individual", "scenario", "draw", "time", "latent"), latent)
    return xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "n_draws": R,
            "seed": int(seed),
            "origin": origin,
            "observation_noise": int(observation_noise),
            "schema_hash": model.schema.hash(),
            "scenarios": json.dumps([s.to_dict() for s in scen]),
        },
    )


def _after_death(twins: DynamicTwins, absolute: np.ndarray) -> np.ndarray:
    """``(N, T)`` flags of grid times after a recorded death, with a warning when any.

    Simulated trajectories are kept there: a scenario asks what would have happened,
    and the model has no survival part to say whether the individual would be alive.
    """
    after = absolute > twins.death_cutoff[:, None]
    if after.any():
        who = after.any(axis=1)
        warnings.warn(
            f"{int(who.sum())} twin(s) have a recorded death inside the simulated horizon"
            f"{twins.undated_death_note(who)}, e.g. {twins.individuals[who][0]!r}: their trajectories after it are kept as "
            "counterfactual (flagged in the 'after_death' coordinate; the model has no "
            "survival part)",
            UserWarning,
            stacklevel=3,
        )
    return after


def summarise_simulation(
    ds: xr.Dataset, quantiles: Sequence[float] = (0.05, 0.5, 0.95), var: str = "value"
) -> xr.Dataset:
    """Mean, sd and quantiles over draws: variables ``mean``, ``sd``, ``q05``, ``q50``, ``q95``.

    Dims are those of ``ds[var]`` without ``draw``; NaN entries (before a twin's
    current time) stay NaN.
    """
    from twin.dynamic_twins import quantile_name

    x = ds[var]
    out = {"mean": x.mean("draw"), "sd": x.std("draw")}
    q = x.quantile(list(quantiles), dim="draw")
    for level in quantiles:
        out[quantile_name(level)] = q.sel(quantile=level, drop=True)
    return xr.Dataset(out, attrs={**ds.attrs, "quantiles": list(quantiles)})


def contrast(
    ds: xr.Dataset,
    a: str,
    b: str,
    *,
    level: float = 0.9,
    average: bool = False,
    var: str = "value",
) -> xr.Dataset:
    """Difference between scenarios ``a`` and ``b`` (``a - b``) with a credible interval.

    Each draw of scenario ``a`` is paired with the same draw of ``b`` (same initial
    state and, for a shared grid, the same noise), so the interval is that of the
    difference itself.

    Parameters
    ----------
    ds
        Output of :func:`simulate_twins`.
    a, b
        Scenario names.
    level
        Credible level of the central interval (``lower``, ``upper``).
    average
        Average the difference over individuals within each draw first: the
        population-average contrast over these twins (dims ``time, feature``).

    Returns
    -------
    xarray.Dataset
        ``mean``, ``sd``, ``lower``, ``upper`` and ``prob_positive`` (share of draws with
        ``a - b > 0``); dims ``(individual, time, feature)`` or ``(time, feature)``.
    """
    names = list(ds["scenario"].values)
    for s in (a, b):
        if s not in names:
            raise KeyError(f"no scenario {s!r}; scenarios: {names}")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    diff = ds[var].sel(scenario=a, drop=True) - ds[var].sel(scenario=b, drop=True)
    if average:
        diff = diff.mean("individual")
    lo, hi = (1 - level) / 2, (1 + level) / 2
    q = diff.quantile([lo, hi], dim="draw")
    valid = diff.notnull()
    out = xr.Dataset(
        {
            "mean": diff.mean("draw"),
            "sd": diff.std("draw"),
            "lower": q.sel(quantile=lo, drop=True),
            "upper": q.sel(quantile=hi, drop=True),
            "prob_positive": (diff > 0).where(valid).mean("draw"),
        },
        attrs={"a": a, "b": b, "level": level, "average": int(average)},
    )
    return out
