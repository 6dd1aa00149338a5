"""``twin fit``: train the longitudinal twin model on a cohort file and save it.

The step between ``twin ingest`` (records → cohort file) and ``twin forecast`` /
``twin simulate`` (saved model + cohort → results).  The model's settings come from
the command line, from a YAML file (``--config``) holding the keyword arguments of
:class:`~twin.model.dynamic_model.DynamicTwinModel` in :data:`MODEL_KEYS` plus ``fit``
(training settings) and ``calibrate`` (interval level, or ``false``), or both; the
command line wins.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from twin.cli.messages import EXIT_BAD_INPUT, EXIT_REFUSED, fail, plain, print_warnings

#: Keyword arguments of DynamicTwinModel a config file may set, with their kind:
#: ``int``, ``float``, ``bool``, ``str``, ``list`` (of names), ``map`` (a mapping),
#: ``features`` (a list or a mapping of modality to list), ``sd`` (a number or a
#: mapping of agent to number), ``pair`` (two numbers).  Device and dtype settings
#: are left to the machine (``device="auto"``).
MODEL_KEYS: dict[str, str] = {
    "modalities": "list",
    "features": "features",
    "latent_dim": "int",
    "agents": "list",
    "transforms": "map",
    "dynamics": "str",
    "prior_effects": "map",
    "agent_exposure": "map",
    "effect_prior_sd": "sd",
    "covariates": "list",
    "timescales": "pair",
    "time_unit": "float",
    "insert_events": "bool",
    "standardize": "bool",
    "neural": "map",
    "structure": "str",
}
#: Keys of the config's ``fit`` section (DynamicTwinModel.fit) and their kind.
FIT_KEYS: dict[str, str] = {
    "epochs": "int",
    "lr": "float",
    "batch_size": "int",
    "validation": "float",
    "patience": "int",
    "seed": "int",
}
#: Default central interval level that ``calibrate`` rescales forecasts to.
DEFAULT_LEVEL = 0.9


def read_fit_config(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a ``twin fit`` YAML file, checked key by key.

    Parameters
    ----------
    path
        YAML file: a mapping of :data:`MODEL_KEYS`, ``fit`` (a mapping of
        :data:`FIT_KEYS`) and ``calibrate`` (``true``, ``false``/``0`` or a level).

    Returns
    -------
    dict
        Model keyword arguments, ``fit`` (a dict) and ``calibrate`` (a level in
        (0, 1), or ``None`` for no calibration) where the file gives them; names
        (agents, modalities, covariates) as strings, numbers as numbers.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not YAML, not a mapping, an unknown setting (the closest allowed one is
        suggested) or a value of the wrong kind; the message names the file and the
        setting.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    allowed = (*MODEL_KEYS, "fit", "calibrate")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"{path}: unknown setting {key!r}{also}; allowed: {list(allowed)}")
        if key == "fit":
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}: 'fit' must be a mapping of {list(FIT_KEYS)}")
            bad = [k for k in value if k not in FIT_KEYS]
            if bad:
                raise ValueError(f"{path}: unknown 'fit' settings {bad}; allowed: {list(FIT_KEYS)}")
            out["fit"] = {k: _typed(v, FIT_KEYS[k], f"{path}: 'fit.{k}'") for k, v in value.items()}
        elif key == "calibrate":
            out["calibrate"] = _calibration_level(value, f"{path}: 'calibrate'")
        else:
            out[key] = _typed(value, MODEL_KEYS[key], f"{path}: {key!r}")
    return out


def _typed(value: Any, kind: str, where: str) -> Any:
    """``value`` checked (and converted: ``"1e-3"`` → 0.001, codes → str) as ``kind``."""
    if value is None:
        return None

    def number(v: Any, cast: type) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"{where} must be a number, got {v!r}")
        try:
            x = float(v)  # YAML reads 1e-3 as text
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {v!r}") from None
        if cast is int and not x.is_integer():
            raise ValueError(f"{where} must be a whole number, got {v!r}")
        return cast(x)

    if kind in ("int", "float"):
        return number(value, int if kind == "int" else float)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be text, got {value!r}")
        return value
    if kind == "map" or (kind in ("features", "sd") and isinstance(value, Mapping)):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping (name: value), got {value!r}")
        if kind == "sd":
            return {str(k): number(v, float) for k, v in value.items()}
        return {str(k): v for k, v in value.items()}
    if kind == "sd":
        return number(value, float)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{where} must be a list, got {value!r}")
    if kind == "pair":
        if len(value) != 2:
            raise ValueError(f"{where} must be two numbers, got {value!r}")
        return tuple(number(v, float) for v in value)
    return [str(v) for v in value]  # names; agent codes YAML read as numbers


def _calibration_level(value: Any, what: str) -> float | None:
    """``True`` → :data:`DEFAULT_LEVEL`; ``False``, ``None`` or 0 → no calibration;
    else a level in (0, 1)."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_LEVEL
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be true, false or a level in (0, 1), got {value!r}"
        ) from None
    if level == 0:
        return None
    if not 0 < level < 1:
        raise ValueError(f"{what} must be 0 (none) or a level in (0, 1), got {value!r}")
    return level


def resolve_features(
    schema: Any, modalities: Sequence[str] | None, wanted: Sequence[str]
) -> list[str]:
    """Feature names for ``wanted``, each a feature name or a display name.

    Parameters
    ----------
    schema
        The cohort's :class:`~twin.cohort.CohortSchema`.
    modalities
        Longitudinal modalities to look in (``None``: all of them).
    wanted
        Feature names (e.g. the LOINC code ``8480-6``) or, failing that, display
        names (``"Systolic Blood Pressure"``, any case).

    Returns
    -------
    list of str
        The feature names, in the order asked.

    Raises
    ------
    KeyError
        A name that matches no feature (close names suggested), a display name
        shared by several features, or one feature asked twice.
    """
    mods = [m for m in schema if m.longitudinal and (modalities is None or m.name in modalities)]
    names = {f.name for m in mods for f in m.features}
    by_display: dict[str, set[str]] = {}
    for m in mods:
        for f in m.features:
            if f.display:
                by_display.setdefault(f.display.casefold(), set()).add(f.name)
    out: list[str] = []
    asked: dict[str, str] = {}
    for want in wanted:
        want = str(want)
        hits = {want} if want in names else by_display.get(want.casefold(), set())
        if len(hits) == 1:
            name = next(iter(hits))
            if name in asked:
                raise KeyError(f"{asked[name]!r} and {want!r} are the same feature {name!r}")
            asked[name] = want
            out.append(name)
            continue
        if len(hits) > 1:
            raise KeyError(f"feature {want!r} is the display name of {sorted(hits)}; give one code")
        labels = sorted(names) + sorted({f.display for m in mods for f in m.features if f.display})
        close = difflib.get_close_matches(want, labels, n=3, cutoff=0.6)
        hint = f"; close: {close}" if close else ""
        raise KeyError(
            f"no longitudinal feature {want!r} (by name or display name){hint}; "
            f"'twin info COHORT' lists them"
        )
    return out


def _transforms(items: Sequence[str]) -> dict[str, str]:
    """``--transform`` items ``FEATURE=KIND`` as a mapping."""
    out = {}
    for item in items:
        name, sep, kind = item.rpartition("=")
        if not sep or not name or not kind:
            raise ValueError(f"--transform takes FEATURE=KIND (e.g. 39156-5=log), got {item!r}")
        out[name] = kind
    return out


def model_settings(
    config: Mapping[str, Any], cli: Mapping[str, Any], schema: Any
) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """The settings of one ``twin fit`` run.

    Parameters
    ----------
    config
        Output of :func:`read_fit_config` (``{}`` without a file).
    cli
        Command-line values by setting name (model keywords, :data:`FIT_KEYS`,
        ``calibrate``); ``None`` where not given.
    schema
        The cohort's schema, to resolve feature names (:func:`resolve_features`).

    Returns
    -------
    tuple
        Model keyword arguments, fit settings and the calibration level (``None``:
        none), the command line's values over the config file's.
    """
    settings = {k: v for k, v in config.items() if k in MODEL_KEYS}
    fit = dict(config.get("fit", {}))
    level = config.get("calibrate", DEFAULT_LEVEL)
    for key, value in cli.items():
        if value is None:
            continue
        if key in FIT_KEYS:
            fit[key] = value
        elif key == "calibrate":
            level = _calibration_level(value, "--calibrate")
        else:
            settings[key] = value
    modalities = settings.get("modalities")
    features = settings.get("features")
    if features is not None and not isinstance(features, Mapping):  # kinds checked on reading
        settings["features"] = resolve_features(schema, modalities, list(features))
    transforms = settings.get("transforms")
    if transforms:
        keys = resolve_features(schema, modalities, list(transforms))
        settings["transforms"] = dict(zip(keys, transforms.values(), strict=True))
    return settings, fit, level


def fit(
    input: Path = typer.Argument(..., help="Cohort file (.nc) with longitudinal records."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write."),
    config: Path | None = typer.Option(
        None, "-c", "--config", help="YAML file of model settings (see the docs)."
    ),
    feature: list[str] | None = typer.Option(
        None, "-f", "--feature", help="Feature to model, by code or display name (repeatable)."
    ),
    modality: list[str] | None = typer.Option(
        None, "-m", "--modality", help="Longitudinal modality to model (repeatable)."
    ),
    agent: list[str] | None = typer.Option(
        None, "-a", "--agent", help="Intervention agent code to model (repeatable)."
    ),
    no_agents: bool = typer.Option(False, "--no-agents", help="Model no interventions."),
    covariate: list[str] | None = typer.Option(
        None, "--covariate", help="Static covariate of the initial state (repeatable)."
    ),
    transform: list[str] | None = typer.Option(
        None, "-t", "--transform", help="FEATURE=KIND, e.g. 39156-5=log (repeatable)."
    ),
    latent_dim: int | None = typer.Option(None, "--latent-dim", help="Latent state size (4)."),
    dynamics: str | None = typer.Option(None, "--dynamics", help="'linear' (default) or 'neural'."),
    epochs: int | None = typer.Option(None, "--epochs", help="Most training epochs (400)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (0.03)."),
    patience: int | None = typer.Option(None, "--patience", help="Early-stopping patience (40)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (0)."),
    calibrate: float | None = typer.Option(
        None,
        "--calibrate",
        help="Interval level the forecast sd is calibrated to on the training records "
        "(default 0.9; 0 for none).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Train the longitudinal twin model on INPUT and save it to OUTPUT.

    By default every continuous feature of every longitudinal modality and every
    intervention agent of INPUT is modelled; choose with --feature / --agent (or a
    --config file). Forecast intervals are calibrated on the training records.
    """
    from twin.cohort import Cohort
    from twin.model.dynamic_model import DynamicTwinModel

    err = Console(stderr=True, soft_wrap=True)
    if output.exists() and not overwrite:
        raise fail(f"{output} exists; pass --overwrite to replace it", EXIT_REFUSED, err)
    if no_agents and agent:
        raise fail("give --agent or --no-agents, not both", EXIT_REFUSED, err)
    try:
        cli = {
            "features": feature or None,
            "modalities": modality or None,
            "agents": [] if no_agents else (agent or None),
            "covariates": covariate or None,
            "transforms": _transforms(transform) if transform else None,
            "latent_dim": latent_dim,
            "dynamics": dynamics,
            "epochs": epochs,
            "lr": lr,
            "patience": patience,
            "seed": seed,
            "calibrate": calibrate,  # 0: none (_calibration_level)
        }
        cohort = Cohort.load(input)
        settings, fit_settings, level = model_settings(
            read_fit_config(config) if config else {}, cli, cohort.schema
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            model = DynamicTwinModel(cohort.schema, device="auto", **settings)
            model.fit(cohort, progress=not quiet, **fit_settings)
            table = model.calibrate_forecast(cohort, level=level) if level is not None else None
        print_warnings([w for w in caught if issubclass(w.category, UserWarning)], err)
        path = model.save(output, overwrite=overwrite)
    except FileExistsError as exc:  # the folder appeared while training
        raise fail(exc, EXIT_REFUSED, err) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise fail(exc, EXIT_BAD_INPUT, err) from exc
    out = Console(soft_wrap=True)
    out.print(plain(model))
    if table is not None:
        out.print(plain(calibration_summary(table, level)))
    out.print(plain(f"wrote {path}"))


def calibration_summary(table: Any, level: float) -> str:
    """Text of a :meth:`~twin.model.dynamic_model.DynamicTwinModel.calibrate_forecast`
    table at ``level``: the features with held-out readings, and a count of the others
    (they keep factor 1)."""
    used = table[table["n"] > 0]
    lines = [f"forecast intervals calibrated to {level:.0%} on the training records:"]
    if len(used):
        lines.append(used.to_string(float_format=lambda v: f"{v:.3g}"))
    rest = len(table) - len(used)
    if rest:
        lines.append(f"{rest} feature(s) with no individual of 3+ readings keep factor 1")
    return "\n".join(lines)
