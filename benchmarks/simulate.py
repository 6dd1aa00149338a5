"""Throughput of the batched latent simulator against per-trajectory loops.

:func:`twin.dynamics.simulate_latent` draws ``N`` individuals x ``S`` scenarios x ``R``
draws of a ``D = 8`` linear-Gaussian latent SDE on a ``T``-point grid (exposures of a
21-day dosing schedule vs. none). Throughput is counted in trajectory-steps per second
(``trajectories x (T - 1) / seconds``). In the same run, on a subset of trajectories,
the same model is simulated by straightforward per-trajectory references:

``loop_exact``
    Python loop over trajectories and steps, NumPy ``z = F_k z + c_k + S_k eps`` with the
    same precomputed exact transition terms (identical maths, no batching).
``loop_euler_maruyama``
    Python loop of Euler–Maruyama steps (one per grid interval) per trajectory.
``solve_ivp_mean``
    :func:`scipy.integrate.solve_ivp` (RK45) of the mean ODE per trajectory, piecewise
    constant input (deterministic: no noise at all).

The reported speed-up is the batched rate over each reference's per-trajectory rate,
by wall-clock time (``speedup``) and by process CPU time (``speedup_cpu_time``: total
core-seconds, which is less sensitive to other load on a shared machine but does not
credit the batched code for using several cores).

Usage::

    python benchmarks/simulate.py                         # 1e4, 1e5, 1e6 trajectories
    python benchmarks/simulate.py --device cuda --dtype float32
    python benchmarks/simulate.py --sizes 10000 --steps 50 --quick

Results go to ``benchmarks/results/simulate.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.integrate
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin.dynamics import (  # noqa: E402
    LinearGaussianDynamics,
    psd_sqrt,
    schedule_exposure,
    simulate_latent,
)

D, P, S, R = 8, 2, 2, 10


def build_model(seed: int) -> LinearGaussianDynamics:
    torch.manual_seed(seed)
    dyn = LinearGaussianDynamics(D, P, timescale=20.0, diffusion_scale=0.2, dtype=torch.float64)
    with torch.no_grad():
        dyn.skew_raw.normal_(0.0, 0.05)
        dyn.sym_factor.normal_(0.0, 0.1)
        dyn.B.normal_(0.0, 0.5)
        dyn.b.normal_(0.0, 0.1)
    return dyn


def build_exposure(times: torch.Tensor) -> torch.Tensor:
    """(S, T, P): scenario 0 no treatment, scenario 1 agent 0 q21d bolus + agent 1 continuous."""
    u = torch.zeros(S, times.shape[0], P, dtype=times.dtype)
    u[1, :, 0] = schedule_exposure(times, 0.0, None, 1.0, 21.0, kernel="bolus", half_life=3.0)
    u[1, :, 1] = schedule_exposure(times, 7.0, 35.0, 0.5)
    return u


def cpu_time() -> float:
    """Process CPU time (user + system, all threads) in seconds."""
    return time.process_time()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_batched(dyn, times, exposure, n_traj, device, dtype, reps) -> dict:
    N = max(1, n_traj // (S * R))
    z0_mean = torch.zeros(N, D, dtype=dtype, device=device)
    z0_cov = 0.1 * torch.eye(D, dtype=dtype, device=device)
    times_d = times.to(device=device, dtype=dtype)
    exp_d = exposure.to(device=device, dtype=dtype)
    best, best_cpu = float("inf"), float("inf")
    for rep in range(reps):
        g = torch.Generator(device=device).manual_seed(rep)
        sync(device)
        t0, c0 = time.perf_counter(), cpu_time()
        z = simulate_latent(dyn, z0_mean, z0_cov, times_d, exp_d, n_draws=R, generator=g)
        sync(device)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, cpu_time() - c0)
        assert torch.isfinite(z[:, :, :, -1]).all()
        del z
    traj = N * S * R
    steps = times.shape[0] - 1
    return {
        "trajectories": traj,
        "individuals": N,
        "scenarios": S,
        "draws": R,
        "steps": steps,
        "seconds": best,
        "cpu_seconds": best_cpu,
        "traj_steps_per_s": traj * steps / best,
        "traj_steps_per_cpu_s": traj * steps / best_cpu,
        "reps": reps,
    }


def reference_terms(dyn, times, exposure):
    with torch.no_grad():
        F, Q, offset = dyn.grid_terms(times, exposure)  # offset (S, T-1, D)
        Sq = psd_sqrt(Q)
        return (
            F.numpy(),
            Sq.numpy(),
            offset.numpy(),
            dyn.A.numpy(),
            dyn.B.numpy(),
            dyn.b.numpy(),
            dyn.L.numpy(),
        )


def time_loop_exact(terms, n_traj, steps, seed=0) -> float:
    F, Sq, offset, *_ = terms
    rng = np.random.default_rng(seed)
    L0 = np.sqrt(0.1) * np.eye(D)
    t0 = time.perf_counter()
    for i in range(n_traj):
        s = i % S
        z = L0 @ rng.standard_normal(D)
        for k in range(steps):
            z = F[k] @ z + offset[s, k] + Sq[k] @ rng.standard_normal(D)
    return time.perf_counter() - t0


def time_loop_em(terms, times, exposure, n_traj, seed=0) -> float:
    _, _, _, A, B, b, L = terms
    u = exposure.numpy()
    dts = np.diff(times.numpy())
    rng = np.random.default_rng(seed)
    L0 = np.sqrt(0.1) * np.eye(D)
    t0 = time.perf_counter()
    for i in range(n_traj):
        s = i % S
        z = L0 @ rng.standard_normal(D)
        for k, dt in enumerate(dts):
            z = z + (A @ z + B @ u[s, k] + b) * dt + L @ rng.standard_normal(D) * np.sqrt(dt)
    return time.perf_counter() - t0


def time_solve_ivp(terms, times, exposure, n_traj) -> float:
    _, _, _, A, B, b, _ = terms
    u = exposure.numpy()
    tt = times.numpy()

    def rhs(t, z, s):
        k = min(np.searchsorted(tt, t, side="right") - 1, len(tt) - 2)
        return A @ z + B @ u[s, k] + b

    t0 = time.perf_counter()
    for i in range(n_traj):
        s = i % S
        scipy.integrate.solve_ivp(
            rhs, (tt[0], tt[-1]), np.zeros(D), t_eval=tt, args=(s,), rtol=1e-6
        )
    return time.perf_counter() - t0


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    ap.add_argument("--steps", type=int, default=50, help="time steps per trajectory")
    ap.add_argument("--ref-trajectories", type=int, default=200)
    ap.add_argument("--ivp-trajectories", type=int, default=20)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    ap.add_argument("--quick", action="store_true", help="one repetition, small references")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "simulate.json")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    ref_n = 40 if args.quick else args.ref_trajectories
    ivp_n = 5 if args.quick else args.ivp_trajectories

    dyn = build_model(0)
    times = torch.arange(args.steps + 1, dtype=torch.float64)  # daily grid
    exposure = build_exposure(times)
    dyn_dev = build_model(0).to(device)

    # Warm-up (allocator, kernels).
    time_batched(dyn_dev, times, exposure, S * R * 10, device, dtype, reps=1)
    batched = []
    for n in args.sizes:
        reps = 1 if (args.quick or n >= 10**6) else 3
        res = time_batched(dyn_dev, times, exposure, n, device, dtype, reps)
        batched.append(res)
        print(
            f"batched  {res['trajectories']:>9,d} traj x {res['steps']} steps: "
            f"{res['seconds']:8.3f} s  {res['traj_steps_per_s']:.3e} traj-steps/s",
            flush=True,
        )

    terms = reference_terms(dyn, times, exposure)
    steps = args.steps
    refs = {}
    for name, fn, n in [  # each returns wall seconds; CPU seconds measured around it
        ("loop_exact", lambda n: time_loop_exact(terms, n, steps), ref_n),
        ("loop_euler_maruyama", lambda n: time_loop_em(terms, times, exposure, n), ref_n),
        ("solve_ivp_mean", lambda n: time_solve_ivp(terms, times, exposure, n), ivp_n),
    ]:
        c0 = cpu_time()
        sec = fn(n)
        cpu = cpu_time() - c0
        refs[name] = {
            "trajectories": n,
            "steps": steps,
            "seconds": sec,
            "cpu_seconds": cpu,
            "traj_steps_per_s": n * steps / sec,
            "traj_steps_per_cpu_s": n * steps / cpu,
            "seconds_per_trajectory": sec / n,
        }
        print(
            f"{name:20s} {n:>5d} traj: {sec:7.3f} s  {n * steps / sec:.3e} traj-steps/s", flush=True
        )

    for res in batched:
        res["speedup"] = {
            k: res["traj_steps_per_s"] / v["traj_steps_per_s"] for k, v in refs.items()
        }
        res["speedup_cpu_time"] = {
            k: res["traj_steps_per_cpu_s"] / v["traj_steps_per_cpu_s"] for k, v in refs.items()
        }
        print(
            f"speed-up at {res['trajectories']:>9,d}: wall "
            + ", ".join(f"{k} {v:,.0f}x" for k, v in res["speedup"].items())
            + " | CPU time "
            + ", ".join(f"{k} {v:,.0f}x" for k, v in res["speedup_cpu_time"].items())
        )

    out = {
        "benchmark": "simulate_latent",
        "latent_dim": D,
        "input_dim": P,
        "dtype": args.dtype,
        "time_grid": f"daily, {steps + 1} points",
        "machine": machine_info(device),
        "batched": batched,
        "references": refs,
        "command": " ".join(["python", "benchmarks/simulate.py", *(argv or sys.argv[1:])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
