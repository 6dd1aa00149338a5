"""``twin simulate``: scenarios on the longitudinal twins of a cohort (twin.simulation)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from twin.cli.messages import EXIT_BAD_INPUT, EXIT_REFUSED, fail


def simulate(
    model: Path = typer.Argument(..., help="Folder of a saved DynamicTwinModel."),
    input: Path = typer.Argument(
        ..., help="Cohort file (.nc) with the individuals' records, or a twins file (twin update)."
    ),
    scenario_yaml: Path = typer.Argument(..., help="Scenario YAML file (one or several)."),
    output: Path = typer.Option(..., "-o", "--output", help="Result file to write (.nc)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    n_draws: int = typer.Option(200, "-n", "--n-draws", help="Draws per individual and scenario."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same draws)."),
    origin: str = typer.Option(
        "current",
        "--origin",
        help="Scenario day 0: 'current' (each twin's last observation) or 'reference' "
        "(days since each individual's reference time).",
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Simulate every individual of INPUT under every scenario of SCENARIO_YAML.

    Writes an xarray/NetCDF file with the draws (``value``: individual, scenario,
    draw, time, feature) and their summary (``value_mean``, ``value_sd``,
    ``value_q05``, ``value_q50``, ``value_q95``).
    """
    from twin.cli.twins_io import load_twins, write_dataset
    from twin.scenario import ScenarioError, load_scenarios
    from twin.simulation import simulate_twins, summarise_simulation

    err = Console(stderr=True, soft_wrap=True)
    if output.exists() and not overwrite:
        raise fail(f"{output} exists; pass --overwrite to replace it", EXIT_REFUSED, err)
    try:
        scenarios = load_scenarios(scenario_yaml)
        twins = load_twins(model, input)
        result = simulate_twins(
            twins, scenarios, n_draws=n_draws, seed=seed, origin=origin, progress=not quiet
        )
    except (FileNotFoundError, ValueError, KeyError, ScenarioError) as exc:
        raise fail(exc, EXIT_BAD_INPUT, err) from exc
    summary = summarise_simulation(result)
    for name in summary.data_vars:
        result[f"value_{name}"] = summary[name]
    write_dataset(result, output, overwrite)
    print(twins)
    print(
        f"simulated {len(twins)} individuals x {result.sizes['scenario']} scenarios "
        f"({', '.join(map(str, result['scenario'].values))}) x {n_draws} draws x "
        f"{result.sizes['time']} times"
    )
    print(f"wrote {output}")
