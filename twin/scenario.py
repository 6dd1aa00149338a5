"""In-silico scenarios: interventions, processing settings and an output grid.

A :class:`Scenario` says what is done to a twin (drug schedules, processing steps)
and for how long to forecast. Scenarios are written in YAML::

    name: chemo_q21d
    description: cisplatin every 21 days
    horizon: 126            # days
    step: 7                 # output grid every 7 days (or `times: [0, 7, 30]`)
    settings: {}            # static processing settings (materials)
    interventions:
      - agent: cisplatin
        dose: 75
        unit: mg/m2
        start: 0
        interval: 21        # days; omit for continuous
        kernel: bolus       # step (default) | bolus
        half_life: 3

A file holds one scenario (a mapping with ``name``), a list of them under
``scenarios:``, and/or parameter sweeps under ``sweep:``::

    sweep:
      base: {name: wc, horizon: 28, step: 1, settings: {water_cement: 0.45}}
      grid:
        settings.water_cement: [0.35, 0.45, 0.55]
      name: "wc_{settings.water_cement}"      # optional name template

A sweep expands the Cartesian product of its ``grid`` (dotted paths into the base
scenario; list items by index, e.g. ``interventions.0.dose``). Every problem raises
:class:`ScenarioError` naming the file (and line), the scenario and the field.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = [
    "Intervention",
    "Scenario",
    "ScenarioError",
    "dump_scenarios",
    "load_scenarios",
    "loads_scenarios",
]

KERNELS = ("step", "bolus")


class ScenarioError(ValueError):
    """Invalid scenario definition; the message names file, line, scenario and field."""


# --------------------------------------------------------------------------- YAML with lines
class _LineDict(dict):
    """Mapping that remembers the YAML line (1-based) of itself and of each key."""

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}


class _LineList(list):
    """Sequence that remembers the YAML line of each item."""

    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ScenarioError(
                f"{loader.name}, line {key_node.start_mark.line + 1}: duplicate key {key!r}"
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _LineList:
    out = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


# YAML 1.1 (PyYAML) reads exponent floats without a dot ("1e-3") as strings; accept them.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _load_yaml(text: str, name: str) -> Any:
    loader = _Loader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}, line {mark.line + 1}, column {mark.column + 1}" if mark else name
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{name}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- validation
class _Ctx:
    """Where a value came from, for error messages."""

    def __init__(self, source: str | None, scenario: str | None = None) -> None:
        self.source = source or "<dict>"
        self.scenario = scenario

    def error(self, fld: str | None, problem: str, line: int | None = None) -> ScenarioError:
        parts = [f"{self.source}, line {line}" if line else self.source]
        if self.scenario is not None:
            parts.append(f"scenario {self.scenario!r}")
        if fld:
            parts.append(f"field {fld!r}")
        return ScenarioError(": ".join(parts) + f": {problem}")


def _line(mapping: Any, key: Any = None) -> int | None:
    if isinstance(mapping, _LineDict):
        if key is not None and key in mapping.key_lines:
            return mapping.key_lines[key]
        return mapping.line
    return getattr(mapping, "line", None)


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _number(
    v: Any, ctx: _Ctx, fld: str, line: int | None, *, optional: bool = False
) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        kind = "a number or null" if optional else "a number"
        raise ctx.error(fld, f"must be {kind}, got {_type_name(v)} {v!r}", line)
    v = float(v)
    if math.isnan(v):
        raise ctx.error(fld, "must not be NaN", line)
    return v


def _string(v: Any, ctx: _Ctx, fld: str, line: int | None, *, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        kind = "a string or null" if optional else "a string"
        hint = (
            f' (codes are text: quote them, {fld.rsplit(".", 1)[-1]}: "{v}"; an unquoted '
            "code with a leading zero such as 03 is read by YAML as another number)"
            if isinstance(v, int | float) and not isinstance(v, bool)
            else ""
        )
        raise ctx.error(fld, f"must be {kind}, got {_type_name(v)} {v!r}{hint}", line)
    return v


def _check_keys(d: Any, allowed: tuple[str, ...], ctx: _Ctx, prefix: str, what: str) -> None:
    if not isinstance(d, dict):
        raise ctx.error(prefix or None, f"{what} must be a mapping, got {_type_name(d)}", _line(d))
    for key in d:
        if key not in allowed:
            fld = f"{prefix}.{key}" if prefix else str(key)
            raise ctx.error(
                fld, f"unknown key {key!r} in {what}; allowed: {', '.join(allowed)}", _line(d, key)
            )


def _fmt(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------- dataclasses
@dataclass
class Intervention:
    """One agent's schedule (a drug, a procedure, a processing step).

    Attributes
    ----------
    agent : str
        Agent code (column of the exposure matrix).
    dose : float, default 1.0
        Amount per administration (non-negative).
    unit : str, optional
        Unit of ``dose`` (informative).
    start : float, default 0.0
        First administration, days relative to the scenario origin.
    stop : float, optional
        End of the schedule (days, ``>= start``); None: open-ended.
    interval : float, optional
        Days between administrations (``> 0``); None: continuous.
    route : str, optional
        Route of administration (informative).
    kernel : {"step", "bolus"}, default "step"
        Exposure kernel, see :mod:`twin.dynamics.exposure`.
    half_life : float, optional
        Elimination half-life (days) for the ``"bolus"`` kernel (required there).
    duration : float, optional
        Length of each ``"step"`` administration (days, ``> 0``).
    """

    agent: str
    dose: float = 1.0
    unit: str | None = None
    start: float = 0.0
    stop: float | None = None
    interval: float | None = None
    route: str | None = None
    kernel: str = "step"
    half_life: float | None = None
    duration: float | None = None

    _FIELDS = (
        "agent",
        "dose",
        "unit",
        "start",
        "stop",
        "interval",
        "route",
        "kernel",
        "half_life",
        "duration",
    )

    def __post_init__(self) -> None:
        self._validate(_Ctx(None), "", None)

    def _validate(self, ctx: _Ctx, prefix: str, src: Any) -> None:
        def ln(key: str) -> int | None:
            return _line(src, key) if src is not None else None

        def f(name: str) -> str:
            return f"{prefix}{name}"

        self.agent = _string(self.agent, ctx, f("agent"), ln("agent"))
        if not self.agent:
            raise ctx.error(f("agent"), "must not be empty", ln("agent"))
        self.dose = _number(self.dose, ctx, f("dose"), ln("dose"))
        if self.dose < 0:
            raise ctx.error(f("dose"), f"must be >= 0, got {_fmt(self.dose)}", ln("dose"))
        self.unit = _string(self.unit, ctx, f("unit"), ln("unit"), optional=True)
        self.route = _string(self.route, ctx, f("route"), ln("route"), optional=True)
        self.start = _number(self.start, ctx, f("start"), ln("start"))
        if not math.isfinite(self.start):
            raise ctx.error(f("start"), "must be finite", ln("start"))
        self.stop = _number(self.stop, ctx, f("stop"), ln("stop"), optional=True)
        if self.stop is not None and self.stop < self.start:
            raise ctx.error(
                f("stop"),
                f"stop ({_fmt(self.stop)}) is before start ({_fmt(self.start)})",
                ln("stop"),
            )
        for name in ("interval", "half_life", "duration"):
            v = _number(getattr(self, name), ctx, f(name), ln(name), optional=True)
            if v is not None and not v > 0:
                raise ctx.error(f(name), f"must be > 0 days, got {_fmt(v)}", ln(name))
            setattr(self, name, v)
        self.kernel = _string(self.kernel, ctx, f("kernel"), ln("kernel"))
        if self.kernel not in KERNELS:
            raise ctx.error(
                f("kernel"),
                f"must be one of {', '.join(KERNELS)}, got {self.kernel!r}",
                ln("kernel"),
            )
        if self.kernel == "bolus" and self.half_life is None:
            raise ctx.error(f("half_life"), "is required by the 'bolus' kernel", ln("kernel"))

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], *, _ctx: _Ctx | None = None, _prefix: str = ""
    ) -> Intervention:
        """Intervention from a mapping with the attribute names as keys."""
        ctx = _ctx or _Ctx(None)
        _check_keys(d, cls._FIELDS, ctx, _prefix.rstrip("."), "an intervention")
        if "agent" not in d:
            raise ctx.error(f"{_prefix}agent", "is required", _line(d))
        obj = object.__new__(cls)
        for name in cls._FIELDS:
            default = cls.__dataclass_fields__[name].default
            setattr(obj, name, d.get(name, default))
        obj._validate(ctx, _prefix, d)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """Mapping of the non-default attributes (``agent`` always)."""
        out: dict[str, Any] = {"agent": self.agent}
        for name in self._FIELDS[1:]:
            value = getattr(self, name)
            if value != self.__dataclass_fields__[name].default:
                out[name] = value
        return out

    def __repr__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{self.agent!r}", f"dose={_fmt(self.dose)}{unit}"]
        if self.interval:
            parts.append(f"every {_fmt(self.interval)} d")
        elif self.kernel == "bolus" or self.duration is not None:
            parts.append("single administration")  # exposure.py: one dose / pulse at start
        else:
            parts.append("continuous")
        window = f"day {_fmt(self.start)}"
        window += f"-{_fmt(self.stop)}" if self.stop is not None else " on"
        parts.append(window)
        if self.kernel == "bolus":
            parts.append(f"bolus t1/2={_fmt(self.half_life)} d")
        if self.duration is not None:
            parts.append(f"duration={_fmt(self.duration)} d")
        if self.route:
            parts.append(f"route={self.route}")
        return f"Intervention({', '.join(parts)})"


@dataclass
class Scenario:
    """What is done to a twin and how far to forecast.

    Attributes
    ----------
    name : str
        Scenario name (unique within a file).
    interventions : list of Intervention
        Schedules applied from the scenario origin (day 0).
    horizon : float
        Forecast horizon in days (``> 0``; required).
    step : float, optional
        Spacing of the output grid (days). Default 1 day unless ``output_times`` is set.
    output_times : list of float, optional
        Explicit output grid (YAML key ``times``), sorted, within ``[0, horizon]``.
    settings : dict of str to float
        Static processing settings (materials) that override an individual's values.
    description : str
        Free text.
    """

    name: str
    interventions: list[Intervention] = field(default_factory=list)
    horizon: float | None = None
    step: float | None = None
    output_times: list[float] | None = None
    settings: dict[str, float] = field(default_factory=dict)
    description: str = ""

    _KEYS = ("name", "description", "horizon", "step", "times", "settings", "interventions")

    def __post_init__(self) -> None:
        self._validate(_Ctx(None, self.name if isinstance(self.name, str) else None), None)

    # ------------------------------------------------------------------ validation
    def _validate(self, ctx: _Ctx, src: Any) -> None:
        def ln(key: str) -> int | None:
            return _line(src, key) if src is not None else None

        self.name = _string(self.name, ctx, "name", ln("name"))
        if not self.name:
            raise ctx.error("name", "must not be empty", ln("name"))
        ctx.scenario = self.name
        self.description = _string(self.description, ctx, "description", ln("description"))
        if self.horizon is None:
            raise ctx.error("horizon", "is required (forecast length in days)", ln("name"))
        self.horizon = _number(self.horizon, ctx, "horizon", ln("horizon"))
        if not (self.horizon > 0 and math.isfinite(self.horizon)):
            raise ctx.error(
                "horizon",
                f"must be a positive number of days, got {_fmt(self.horizon)}",
                ln("horizon"),
            )
        self.step = _number(self.step, ctx, "step", ln("step"), optional=True)
        if self.step is not None and not self.step > 0:
            raise ctx.error("step", f"must be > 0 days, got {_fmt(self.step)}", ln("step"))
        if self.output_times is not None:
            if self.step is not None:
                raise ctx.error("times", "give either 'step' or 'times', not both", ln("times"))
            if not isinstance(self.output_times, list | tuple) or not self.output_times:
                raise ctx.error(
                    "times",
                    f"must be a non-empty list of days, got {_type_name(self.output_times)}",
                    ln("times"),
                )
            vals = [
                _number(v, ctx, f"times[{i}]", ln("times")) for i, v in enumerate(self.output_times)
            ]
            if any(b < a for a, b in itertools.pairwise(vals)):
                raise ctx.error("times", "must be sorted in increasing order", ln("times"))
            if vals[0] < 0 or vals[-1] > self.horizon:
                raise ctx.error(
                    "times", f"must lie within [0, horizon={_fmt(self.horizon)}]", ln("times")
                )
            self.output_times = vals
        if not isinstance(self.settings, dict):
            raise ctx.error(
                "settings",
                f"must be a mapping of name: number, got {_type_name(self.settings)}",
                ln("settings"),
            )
        settings = {}
        for key, value in self.settings.items():
            line = (
                _line(self.settings, key)
                if isinstance(self.settings, _LineDict)
                else ln("settings")
            )
            if not isinstance(key, str):
                raise ctx.error(f"settings.{key}", "setting names must be strings", line)
            settings[key] = _number(value, ctx, f"settings.{key}", line)
        self.settings = settings
        if not isinstance(self.interventions, list | tuple):
            raise ctx.error(
                "interventions",
                f"must be a list, got {_type_name(self.interventions)}",
                ln("interventions"),
            )
        ivs = []
        for i, iv in enumerate(self.interventions):
            prefix = f"interventions[{i}]."
            if isinstance(iv, Intervention):
                iv._validate(ctx, prefix, None)
                ivs.append(iv)
            else:
                if not isinstance(iv, dict):
                    items = getattr(self.interventions, "item_lines", [])
                    line = items[i] if i < len(items) else ln("interventions")
                    raise ctx.error(prefix[:-1], f"must be a mapping, got {_type_name(iv)}", line)
                ivs.append(Intervention.from_dict(iv, _ctx=ctx, _prefix=prefix))
        self.interventions = ivs
        late = [iv.agent for iv in ivs if iv.start > self.horizon]
        if late:
            where = "" if ctx.source == "<dict>" else f"{ctx.source}: "
            warnings.warn(
                f"{where}scenario {self.name!r}: {late} start after the horizon "
                f"({_fmt(self.horizon)} d) and have no effect within it",
                stacklevel=3,
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | None = None) -> Scenario:
        """Scenario from a mapping with the YAML keys (``times`` for the explicit grid).

        ``source`` names the origin (file) in error messages.
        """
        ctx = _Ctx(source)
        if isinstance(d, dict) and isinstance(d.get("name"), str):
            ctx.scenario = d["name"]
        _check_keys(d, cls._KEYS, ctx, "", "a scenario")
        if "name" not in d:
            raise ctx.error("name", "is required", _line(d))
        obj = object.__new__(cls)
        obj.name = d["name"]
        obj.description = d.get("description", "")
        obj.horizon = d.get("horizon")
        obj.step = d.get("step")
        obj.output_times = d.get("times")
        obj.settings = d.get("settings", {})
        obj.interventions = d.get("interventions", [])
        if obj.settings is None:
            obj.settings = {}
        if obj.interventions is None:
            obj.interventions = []
        obj._validate(ctx, d)
        return obj

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scenario:
        """The single scenario of a YAML file (use :func:`load_scenarios` for several)."""
        scenarios = load_scenarios(path)
        if len(scenarios) != 1:
            names = ", ".join(repr(s.name) for s in scenarios)
            raise ScenarioError(
                f"{path}: holds {len(scenarios)} scenarios ({names}); use twin.scenario.load_scenarios"
            )
        return scenarios[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (YAML keys) that :meth:`from_dict` reads back to an equal scenario."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["horizon"] = self.horizon
        if self.output_times is not None:
            out["times"] = list(self.output_times)
        elif self.step is not None:
            out["step"] = self.step
        if self.settings:
            out["settings"] = dict(self.settings)
        out["interventions"] = [iv.to_dict() for iv in self.interventions]
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of this scenario, written to ``path`` if given."""
        return dump_scenarios([self], path, single=True)

    # ------------------------------------------------------------------ grid and exposure
    @property
    def agents(self) -> list[str]:
        """Agents of the interventions, in order of first appearance."""
        return list(dict.fromkeys(iv.agent for iv in self.interventions))

    def times(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Output grid (days): ``output_times``, or ``0, step, 2 step, ...`` up to and
        including ``horizon`` (appended when not a multiple of ``step``)."""
        if self.output_times is not None:
            return torch.tensor(self.output_times, dtype=dtype, device=device)
        step = self.step if self.step is not None else 1.0
        n = math.floor(self.horizon / step + 1e-9)
        grid = [k * step for k in range(n + 1)]
        if self.horizon - grid[-1] > 1e-9 * max(1.0, self.horizon):
            grid.append(self.horizon)
        return torch.tensor(grid, dtype=dtype, device=device)

    def exposure(
        self,
        agents: list[str] | None = None,
        times: torch.Tensor | None = None,
        *,
        mode: str = "average",
    ) -> torch.Tensor:
        """Exposure ``(..., T, P)`` of the interventions on ``times`` (default :meth:`times`).

        ``agents`` fixes the column order (default :attr:`agents`); see
        :func:`twin.dynamics.exposure.exposure_from_interventions`.
        """
        from twin.dynamics.exposure import exposure_from_interventions

        if times is None:
            times = self.times()
        return exposure_from_interventions(
            self.interventions, agents if agents is not None else self.agents, times, mode=mode
        )

    def __repr__(self) -> str:
        grid = (
            f"times=[{', '.join(_fmt(t) for t in self.output_times)}]"
            if self.output_times is not None
            else f"step={_fmt(self.step if self.step is not None else 1.0)} d"
        )
        parts = [repr(self.name), f"horizon={_fmt(self.horizon)} d", grid]
        if self.settings:
            parts.append(
                "settings={" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.settings.items()) + "}"
            )
        if self.interventions:
            parts.append("interventions=[" + ", ".join(repr(iv) for iv in self.interventions) + "]")
        else:
            parts.append("no interventions")
        return f"Scenario({', '.join(parts)})"


# --------------------------------------------------------------------------- files
def _set_path(d: Any, path: str, value: Any, ctx: _Ctx, line: int | None) -> None:
    keys = path.split(".")
    node = d
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ctx.error(
                    f"sweep.grid.{path}",
                    f"no list item {key!r} at {'.'.join(keys[:i]) or 'top'}",
                    line,
                )
            key = int(key)
        elif isinstance(node, dict):
            if not last and key not in node:
                node[key] = _LineDict()
        else:
            raise ctx.error(
                f"sweep.grid.{path}", f"{'.'.join(keys[:i])} is not a mapping or list", line
            )
        if last:
            node[key] = value
        else:
            node = node[key]


def _expand_sweep(sweep: Any, ctx: _Ctx) -> list[dict[str, Any]]:
    _check_keys(sweep, ("base", "grid", "name"), ctx, "sweep", "a sweep")
    for key in ("base", "grid"):
        if key not in sweep:
            raise ctx.error(f"sweep.{key}", "is required", _line(sweep))
    base, grid = sweep["base"], sweep["grid"]
    if not isinstance(base, dict):
        raise ctx.error(
            "sweep.base",
            f"must be a scenario mapping, got {_type_name(base)}",
            _line(sweep, "base"),
        )
    if not isinstance(grid, dict) or not grid:
        raise ctx.error(
            "sweep.grid", "must be a non-empty mapping of path: [values]", _line(sweep, "grid")
        )
    for path, values in grid.items():
        if not isinstance(path, str) or not isinstance(values, list) or not values:
            raise ctx.error(
                f"sweep.grid.{path}", "must be a non-empty list of values", _line(grid, path)
            )
    template = sweep.get("name")
    if template is not None and not isinstance(template, str):
        raise ctx.error("sweep.name", "must be a string template", _line(sweep, "name"))
    base_name = base.get("name", "sweep")
    paths = list(grid)
    out = []
    for combo in itertools.product(*(grid[p] for p in paths)):
        d = copy.deepcopy(base)
        for path, value in zip(paths, combo, strict=True):
            _set_path(d, path, value, ctx, _line(grid, path))
        label = {
            p: (_fmt(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v))
            for p, v in zip(paths, combo, strict=True)
        }
        if template is not None:
            name = template
            for p, v in label.items():
                name = name.replace("{" + p + "}", v).replace("{" + p.split(".")[-1] + "}", v)
        else:
            name = (
                f"{base_name}["
                + ",".join(f"{p.split('.')[-1]}={v}" for p, v in label.items())
                + "]"
            )
        d["name"] = name
        out.append(d)
    return out


def _scenarios_from_data(data: Any, source: str) -> list[Scenario]:
    ctx = _Ctx(source)
    if data is None:
        raise ctx.error(None, "file is empty; expected a scenario, 'scenarios:' or 'sweep:'")
    raw: list[Any] = []
    if isinstance(data, list):
        raw = list(data)
    elif isinstance(data, dict) and "name" in data:
        raw = [data]
    elif isinstance(data, dict):
        _check_keys(data, ("scenarios", "sweep"), ctx, "", "a scenario file (or 'name' is missing)")
        if not data:
            raise ctx.error(None, "expected 'scenarios:' or 'sweep:'", _line(data))
        items = data.get("scenarios", []) or []
        if not isinstance(items, list):
            raise ctx.error(
                "scenarios",
                f"must be a list of scenarios, got {_type_name(items)}",
                _line(data, "scenarios"),
            )
        raw.extend(items)
        sweeps = data.get("sweep")
        if sweeps is not None:
            for sw in sweeps if isinstance(sweeps, list) else [sweeps]:
                raw.extend(_expand_sweep(sw, ctx))
    else:
        raise ctx.error(
            None, f"expected a mapping or a list at the top level, got {_type_name(data)}"
        )
    scenarios = []
    seen: dict[str, int] = {}
    for i, d in enumerate(raw):
        if not isinstance(d, dict):
            raise ctx.error(
                f"scenarios[{i}]", f"must be a mapping, got {_type_name(d)}", _line(raw)
            )
        sc = Scenario.from_dict(d, source=source)
        if sc.name in seen:
            raise _Ctx(source, sc.name).error("name", "duplicate scenario name", _line(d, "name"))
        seen[sc.name] = i
        scenarios.append(sc)
    return scenarios


def load_scenarios(path: str | Path) -> list[Scenario]:
    """All scenarios of a YAML file (single scenario, ``scenarios:`` list and/or ``sweep:``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc.strerror or exc}") from None
    return _scenarios_from_data(_load_yaml(text, str(path)), str(path))


def loads_scenarios(text: str, source: str = "<string>") -> list[Scenario]:
    """Scenarios from YAML text (``source`` names it in errors)."""
    return _scenarios_from_data(_load_yaml(text, source), source)


def dump_scenarios(
    scenarios: list[Scenario], path: str | Path | None = None, *, single: bool = False
) -> str:
    """YAML text of scenarios (a ``scenarios:`` list, or one mapping with ``single``)."""
    if single and len(scenarios) == 1:
        data: Any = scenarios[0].to_dict()
    else:
        data = {"scenarios": [s.to_dict() for s in scenarios]}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
