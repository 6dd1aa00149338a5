"""``twin demo``: the main workflow on demo data shipped with the package.

1. FHIR: ingest 30 Synthea patients into a cohort (with the ingestion report).
2. Omics: train the population model on ROSMAP (three omics blocks), instantiate
   twins of held-out individuals whose mRNA block is hidden, impute it with
   uncertainty, and score the imputation against the truth and mean imputation.
3. Longitudinal: train the latent dynamics on a lesion-size trial (two arms as
   interventions), forecast held-out patients' last reading from their first two,
   sharpen the forecast with ``update`` as readings 3 and 4 arrive, simulate both
   arms for every held-out patient and plot one patient's scenarios with bands.

Everything is written to one output folder; a folder that holds other files is
never overwritten.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from twin.cli.messages import plain

MARKER = ".twin-demo"


def prepare_output(out: Path, console: Console) -> Path:
    """Create ``out``; reuse it only if it is empty or an earlier demo's folder."""
    if out.exists():
        if not out.is_dir():
            raise typer.BadParameter(f"{out} exists and is not a folder")
        if (out / MARKER).exists():
            console.print(plain(f"replacing the earlier demo output in {out}"), style="yellow")
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise typer.BadParameter(
                f"{out} exists and holds files that are not from 'twin demo'; choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("created by 'twin demo'; the next demo run may replace this folder\n")
    return out


def fhir_step(out: Path, console: Console) -> dict:
    from twin.datasets import synthea_demo_path
    from twin.io.fhir import ingest as ingest_fhir

    console.rule("[bold]1. FHIR records → cohort")
    t0 = time.perf_counter()
    cohort, report = ingest_fhir(synthea_demo_path())
    seconds = time.perf_counter() - t0
    console.print(plain(report))
    console.print(cohort)
    path = cohort.save(out / "synthea_cohort.nc")
    console.print(plain(f"saved {path} ({seconds:.1f} s to ingest)"))
    return {"individuals": len(cohort), "seconds": round(seconds, 2), "file": path.name}


def omics_step(out: Path, console: Console, epochs: int | None, seed: int) -> dict:
    import twin
    from twin.datasets import load_rosmap
    from twin.evaluate import evaluate_imputation, imputation_metrics

    console.rule("[bold]2. Population model on multi-omics → twins → imputation")
    cohort = load_rosmap()
    train, test = cohort.split((0.8, 0.2), seed=seed)
    console.print(f"ROSMAP excerpt: {len(train)} training, {len(test)} held-out individuals")
    model = twin.TwinModel(cohort.schema, latent_dim=8)
    t0 = time.perf_counter()
    settings = {"epochs": epochs} if epochs else {}
    model.fit(train, seed=seed, **settings)
    fit_s = time.perf_counter() - t0
    console.print(model)
    partial = test.hide("mrna")  # held-out individuals arrive without their mRNA block
    twins = model.instantiate(partial)
    console.print(twins)
    imputed = twins.impute(seed=seed)
    imputed.to_netcdf(out / "rosmap_imputation.nc", engine="h5netcdf")
    model.save(out / "rosmap_model")

    truth = test.values("mrna")
    train_mean = np.nanmean(train.values("mrna"), axis=0)
    lo, hi = np.nanquantile(train.values("mrna"), [0.05, 0.95], axis=0)
    full = np.ones_like(truth)
    scores = {
        "twin": evaluate_imputation(test, imputed, "mrna", train_mean=train_mean),
        "mean imputation": imputation_metrics(
            truth, train_mean * full, lo * full, hi * full, train_mean=train_mean
        ),
    }

    table = Table(title="held-out mRNA imputed from methylation + miRNA")
    for col in ("method", "R² (variance-weighted)", "MAE", "90% interval coverage"):
        table.add_column(col)
    for name, s in scores.items():
        table.add_row(name, f"{s['r2']:+.3f}", f"{s['mae']:.4f}", f"{s['coverage']:.3f}")
    console.print(table)
    _plot_imputation(test, imputed, out / "rosmap_imputation.png")
    console.print(
        f"fit {fit_s:.1f} s; wrote rosmap_imputation.nc, rosmap_imputation.png, rosmap_model/"
    )
    return {
        "fit_seconds": round(fit_s, 2),
        **{
            f"{k}_{m}": round(float(v[m]), 4)
            for k, v in scores.items()
            for m in ("r2", "mae", "coverage")
        },
    }


def _plot_imputation(test, imputed, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = test.values("mrna")
    order = np.argsort(np.nanvar(truth, axis=0))[::-1][:3]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    names = imputed["mrna_feature"].values
    for ax, j in zip(axes, order, strict=True):
        x = truth[:, j]
        mean = imputed["mrna"].values[:, j]
        lo, hi = imputed["mrna_q05"].values[:, j], imputed["mrna_q95"].values[:, j]
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", ms=3, alpha=0.6, lw=0.8)
        lim = [min(x.min(), lo.min()), max(x.max(), hi.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(xlabel="measured", ylabel="imputed (90% interval)", title=str(names[j])[:24])
    fig.suptitle("ROSMAP: mRNA of held-out individuals imputed from the other blocks")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def demo(
    out: Path = typer.Option(Path("twin-demo"), "--out", help="Folder for the demo's outputs."),
    epochs: int = typer.Option(0, help="Cap on training epochs (0: the model's default)."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Run the main twin workflow on demo data shipped with the package."""
    console = Console()
    out = prepare_output(out, console)
    summary = {
        "fhir": fhir_step(out, console),
        "omics": omics_step(out, console, epochs or None, seed),
        "longitudinal": longitudinal_step(out, console, epochs or None, seed),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.rule("[bold green]done")
    console.print(plain(f"outputs in {out.resolve()}"))


def longitudinal_step(out: Path, console: Console, epochs: int | None, seed: int) -> dict:
    import twin
    from twin.cohort.window import first_observations, observations_before
    from twin.datasets import lesion_demo_path, lesion_demo_scenarios_path
    from twin.model.dynamic_model import DynamicTwinModel
    from twin.scenario import load_scenarios
    from twin.simulation import contrast

    console.rule("[bold]3. Latent dynamics on a trial → forecast, update, simulate arms")
    cohort = twin.read_lesion_trials(lesion_demo_path())
    train, test = cohort.split((0.7, 0.3), seed=seed)
    arms = sorted(set(cohort.interventions["agent"]))
    console.print(
        f"lesion trial (Study 4): {len(train)} training, {len(test)} held-out patients; "
        f"arms {', '.join(arms)}"
    )
    model = DynamicTwinModel(
        cohort.schema,
        ["lesion"],
        features={"lesion": ["diameter"]},
        transforms={"diameter": "log+5"},
        latent_dim=3,
        agents=arms,
    )
    # each arm acts from day 0, its exposure decaying with a 60-day half-life
    model.agent_exposure = {a: {"kernel": "bolus", "half_life": 60.0} for a in arms}
    t0 = time.perf_counter()
    model.fit(train, seed=seed, lr=0.03, patience=40, epochs=epochs or 300)
    fit_s = time.perf_counter() - t0
    console.print(model)

    # held-out patients with >= 5 readings: forecast the last from the first 2, 3, 4
    readings = test.to_long("lesion")
    readings = readings[readings["feature"] == "diameter"].sort_values(["individual", "t"])
    counts = readings.groupby("individual").size()
    sub = test.select(list(counts[counts >= 5].index))
    last = readings.groupby("individual").tail(1).set_index("individual").loc[sub.individuals]
    t_last, y_last = last["t"].to_numpy(), last["value"].to_numpy()
    table = Table(
        title=f"last reading of {len(sub)} held-out patients, forecast as readings arrive"
    )
    for col in ("readings used", "MAE (mm)", "last value carried forward", "90% width (mm)"):
        table.add_column(col)
    stages = []
    twins = model.instantiate(first_observations(sub, 2, "lesion", "diameter"))
    for k in (2, 3, 4):
        if k > 2:  # Bayesian filtering from the current posterior, no retraining
            twins = twins.update(first_observations(sub, k, "lesion", "diameter"))
        fc = twins.forecast(t_last[:, None])
        med = fc["diameter_q50"].values[:, 0]
        width = (fc["diameter_q95"] - fc["diameter_q05"]).values[:, 0]
        lvcf = twins.observations().groupby("individual")["value"].last().loc[sub.individuals]
        stage = {
            "readings": k,
            "mae": float(np.abs(med - y_last).mean()),
            "mae_last_value": float(np.abs(lvcf.to_numpy() - y_last).mean()),
            "width90": float(width.mean()),
        }
        stages.append(stage)
        table.add_row(
            str(k),
            f"{stage['mae']:.2f}",
            f"{stage['mae_last_value']:.2f}",
            f"{stage['width90']:.1f}",
        )
    console.print(table)

    # both arms from day 0 (the shipped YAML), from each patient's pre-treatment readings;
    # the model, the baseline cohort and the YAML are saved for 'twin simulate'
    yaml_path = shutil.copyfile(lesion_demo_scenarios_path(), out / "lesion_arms.yaml")
    scenarios = load_scenarios(yaml_path)
    before = observations_before(test, 1e-6)
    model.save(out / "lesion_model")
    before.save(out / "lesion_baseline.nc")
    baseline = model.instantiate(before)
    result = baseline.simulate(scenarios, n_draws=200, seed=seed, origin="reference")
    result.to_netcdf(out / "lesion_scenarios.nc", engine="h5netcdf")
    diff = contrast(result, arms[1], arms[0], average=True).sel(feature="diameter")
    table = Table(title=f"{arms[1]} − {arms[0]}, simulated for all {len(test)} held-out patients")
    for col in ("day", "mean difference (mm)", "90% credible interval"):
        table.add_column(col)
    for day in diff["time"].values[1:]:
        d = diff.sel(time=day)
        table.add_row(
            f"{day:g}",
            f"{float(d['mean']):+.2f}",
            f"[{float(d['lower']):+.2f}, {float(d['upper']):+.2f}]",
        )
    console.print(table)
    _plot_scenarios(baseline, scenarios, readings, out / "lesion_scenarios.png", seed)
    console.print(f"fit {fit_s:.1f} s; wrote lesion_scenarios.nc, lesion_scenarios.png")
    console.print(
        plain(
            "the same simulation from the command line: twin simulate "
            f"{out / 'lesion_model'} {out / 'lesion_baseline.nc'} {yaml_path} "
            f"-o {out / 'lesion_cli.nc'} --origin reference --seed {seed}"
        ),
        soft_wrap=True,  # one line, to copy and paste
    )
    return {
        "fit_seconds": round(fit_s, 2),
        "forecast_stages": [{k: round(v, 3) for k, v in s.items()} for s in stages],
        "simulated_difference_day168": round(float(diff.sel(time=168.0)["mean"]), 3),
    }


def _plot_scenarios(twins, scenarios, readings, path: Path, seed: int) -> None:
    """Both arms for the held-out patient with most readings, and the readings it had."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    who = readings.groupby("individual").size().idxmax()
    weekly = [dataclasses.replace(s, output_times=None, step=7.0) for s in scenarios]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    twins.plot(who, "diameter", scenarios=weekly, seed=seed, ax=ax)
    mine = readings[readings["individual"] == who]
    later = mine[(mine["t"] > 0) & (mine["t"] <= scenarios[0].horizon)]
    ax.scatter(later["t"], later["value"], marker="x", color="k", label="later readings (held out)")
    ax.legend(fontsize=8)
    ax.set(title=f"patient {str(who)[:12]}…: both arms from its baseline reading (90% bands)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
