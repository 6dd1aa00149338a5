"""The processing → structure → property graph of a materials cohort.

A :class:`ProcessGraph` is a directed acyclic graph whose nodes are the modalities of
a cohort, each with a *role*, and whose edges read "may inform": an edge
``composition → properties`` says a model may use composition to explain or predict
properties.  Later, model-based parts of twin use it to decide which modalities
condition which; here it is a checked description that travels with the cohort (JSON
in the attribute ``twin_process_graph``).

Roles follow the materials-science chain, in stages:

====================================  =====  =====================================
role                                  stage  examples
====================================  =====  =====================================
``composition``                       0      chemistry, mix proportions
``processing``                        0      heat treatment, rolling, curing
``ageing``                            0      service exposure, environment history
``structure``                         1      inclusions, grain size, porosity
``property``                          2      strength, hardness, fatigue life
====================================  =====  =====================================

An edge may not go back to an earlier stage (a property cannot inform processing).
The time axis of a cohort (e.g. a concrete's age) is not a node: name it with
``time_axis``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from twin.cohort import Cohort, CohortSchema

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["GRAPH_ATTR", "ROLES", "ProcessGraph"]

#: Node roles, each with its stage in the processing → structure → property chain.
ROLES: dict[str, int] = {
    "composition": 0,
    "processing": 0,
    "ageing": 0,
    "structure": 1,
    "property": 2,
}

#: Cohort attribute holding the graph as JSON.
GRAPH_ATTR = "twin_process_graph"

_COLOURS = {
    "composition": "#4C72B0",
    "processing": "#DD8452",
    "ageing": "#8172B3",
    "structure": "#55A868",
    "property": "#C44E52",
}


class ProcessGraph:
    """Modalities with roles and "may inform" edges (a DAG).

    Parameters
    ----------
    roles
        ``{modality: role}``, role one of :data:`ROLES`.
    edges
        ``(source, target)`` pairs: ``source`` may inform ``target``.
    time_axis
        What the cohort's time axis means, e.g. ``"age"``; ``None`` if no time axis.
    descriptions
        Optional one-line description per modality.

    Raises
    ------
    ValueError
        For an unknown role, an edge naming an unknown modality, a self-loop, a cycle
        or an edge from a later stage to an earlier one.

    Examples
    --------
    >>> g = ProcessGraph({"mix": "composition", "strength": "property"},
    ...                  [("mix", "strength")], time_axis="age")
    >>> g.informs("mix", "strength"), g.informs("strength", "mix")
    (True, False)
    """

    def __init__(
        self,
        roles: Mapping[str, str],
        edges: Iterable[tuple[str, str]] = (),
        *,
        time_axis: str | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        g = nx.DiGraph()
        descriptions = dict(descriptions or {})
        unknown_desc = set(descriptions) - set(roles)
        if unknown_desc:
            raise ValueError(f"descriptions for unknown modalities {sorted(unknown_desc)}")
        for m, role in roles.items():
            if role not in ROLES:
                raise ValueError(f"modality {m!r}: unknown role {role!r}; roles: {list(ROLES)}")
            g.add_node(str(m), role=str(role), description=str(descriptions.get(m, "")))
        for edge in edges:
            if len(edge) != 2:
                raise ValueError(f"an edge is a (source, target) pair, got {edge!r}")
            a, b = (str(x) for x in edge)
            for x in (a, b):
                if x not in g:
                    raise ValueError(
                        f"edge {a!r} -> {b!r} names {x!r}, which is not a modality of the "
                        f"graph; modalities: {list(g)}"
                    )
            if a == b:
                raise ValueError(f"modality {a!r} cannot inform itself")
            ra, rb = g.nodes[a]["role"], g.nodes[b]["role"]
            if ROLES[ra] > ROLES[rb]:
                raise ValueError(
                    f"edge {a!r} ({ra}) -> {b!r} ({rb}) goes against processing -> structure "
                    "-> property"
                )
            g.add_edge(a, b)
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            raise ValueError(f"the graph has a cycle: {' -> '.join(a for a, _ in cycle)}")
        self._g = g
        self._time_axis = time_axis

    # ------------------------------------------------------------------ queries
    @property
    def time_axis(self) -> str | None:
        """What the cohort's time axis means (e.g. ``"age"``), or ``None``."""
        return self._time_axis

    @property
    def graph(self) -> nx.DiGraph:
        """A copy of the underlying :class:`networkx.DiGraph` (node attributes: role, description)."""
        return self._g.copy()

    @property
    def modalities(self) -> list[str]:
        """Modalities in insertion order."""
        return list(self._g.nodes)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """The "may inform" edges."""
        return list(self._g.edges)

    @property
    def roles(self) -> dict[str, str]:
        """``{modality: role}``."""
        return {m: d["role"] for m, d in self._g.nodes(data=True)}

    def role(self, modality: str) -> str:
        """The role of one modality."""
        self._check(modality)
        return self._g.nodes[modality]["role"]

    def with_role(self, role: str) -> list[str]:
        """Modalities with the given role, in insertion order."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {list(ROLES)}")
        return [m for m, r in self.roles.items() if r == role]

    def informs(self, source: str, target: str, direct: bool = False) -> bool:
        """Whether ``source`` may inform ``target`` (through other modalities unless ``direct``)."""
        self._check(source)
        self._check(target)
        if source == target:
            return False
        if direct:
            return self._g.has_edge(source, target)
        return nx.has_path(self._g, source, target)

    def upstream(self, modality: str, direct: bool = False) -> list[str]:
        """Modalities that may inform ``modality`` (all ancestors, or parents if ``direct``)."""
        self._check(modality)
        found = set(self._g.predecessors(modality) if direct else nx.ancestors(self._g, modality))
        return [m for m in self._g if m in found]

    def downstream(self, modality: str, direct: bool = False) -> list[str]:
        """Modalities ``modality`` may inform (all descendants, or children if ``direct``)."""
        self._check(modality)
        found = set(self._g.successors(modality) if direct else nx.descendants(self._g, modality))
        return [m for m in self._g if m in found]

    def subgraph(self, modalities: Iterable[str]) -> ProcessGraph:
        """The graph on some modalities; an edge through a dropped modality is kept as a direct edge."""
        keep = list(dict.fromkeys(modalities))
        for m in keep:
            self._check(m)
        edges = [(a, b) for a in keep for b in keep if a != b and nx.has_path(self._g, a, b)]
        return ProcessGraph(
            {m: self.role(m) for m in keep},
            edges,
            time_axis=self.time_axis,
            descriptions={m: self._g.nodes[m]["description"] for m in keep},
        )

    def _check(self, modality: str) -> None:
        if modality not in self._g:
            raise KeyError(f"graph has no modality {modality!r}; modalities: {self.modalities}")

    # ------------------------------------------------------------------ cohorts
    def validate_against(self, schema: CohortSchema | Cohort | Iterable[str]) -> None:
        """Check that the graph's modalities are exactly the cohort's.

        Parameters
        ----------
        schema
            A :class:`CohortSchema`, a :class:`Cohort` or modality names.

        Raises
        ------
        ValueError
            Naming the modalities only in the graph and those only in the cohort.
        """
        if isinstance(schema, Cohort):
            names = schema.modalities
        elif isinstance(schema, CohortSchema):
            names = schema.names
        else:
            names = [str(n) for n in schema]
        only_graph = [m for m in self._g if m not in names]
        only_cohort = [m for m in names if m not in self._g]
        problems = []
        if only_graph:
            problems.append(f"in the graph but not in the cohort: {only_graph}")
        if only_cohort:
            problems.append(f"in the cohort but not in the graph: {only_cohort}")
        if problems:
            raise ValueError(
                "process graph does not match the cohort's modalities: " + "; ".join(problems)
            )

    def attach(self, cohort: Cohort) -> Cohort:
        """The cohort with this graph stored in its attribute ``twin_process_graph``.

        The graph is validated against the cohort first; the data are shared, not copied.
        """
        self.validate_against(cohort)
        data = cohort.data.copy(deep=False)
        data.attrs = {**cohort.data.attrs, GRAPH_ATTR: json.dumps(self.to_dict())}
        return Cohort(data)

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> ProcessGraph:
        """The graph stored in a cohort by :meth:`attach` (or a materials reader)."""
        raw = cohort.attr_json(GRAPH_ATTR)
        if raw is None:
            raise KeyError(f"cohort has no {GRAPH_ATTR!r} attribute")
        return cls.from_dict(raw)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``nodes`` (name, role, description), ``edges``, ``time_axis``."""
        return {
            "nodes": [
                {"name": m, "role": d["role"], "description": d["description"]}
                for m, d in self._g.nodes(data=True)
            ],
            "edges": [[a, b] for a, b in self._g.edges],
            "time_axis": self.time_axis,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcessGraph:
        """Inverse of :meth:`to_dict`."""
        try:
            nodes = list(d["nodes"])
            roles = {n["name"]: n["role"] for n in nodes}
            descriptions = {n["name"]: n.get("description", "") for n in nodes}
            edges = [tuple(e) for e in d.get("edges", [])]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a process graph dictionary: {exc!r}") from exc
        return cls(roles, edges, time_axis=d.get("time_axis"), descriptions=descriptions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessGraph):
            return NotImplemented
        return (
            self.roles == other.roles
            and set(self.edges) == set(other.edges)
            and self.time_axis == other.time_axis
        )

    def __repr__(self) -> str:
        edges = ", ".join(f"{a} -> {b}" for a, b in self.edges)
        axis = f", time axis {self.time_axis!r}" if self.time_axis else ""
        return f"<ProcessGraph: {len(self._g)} modalities, edges [{edges}]{axis}>"

    # ------------------------------------------------------------------ display
    def plot(self, ax: Axes | None = None) -> Axes:
        """Draw the graph left to right by stage, nodes coloured by role.

        Parameters
        ----------
        ax
            Matplotlib axes to draw on; a new figure if ``None``.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            fig.subplots_adjust(left=0.02, right=0.75)  # room for the legend on the right
        columns: dict[int, list[str]] = {}
        for m, r in self.roles.items():
            columns.setdefault(ROLES[r], []).append(m)
        pos = {}
        for stage, nodes in columns.items():
            for k, m in enumerate(nodes):
                pos[m] = (float(stage), (len(nodes) - 1) / 2 - k)
        tallest = max(len(nodes) for nodes in columns.values())
        colours = [_COLOURS[self._g.nodes[m]["role"]] for m in self._g]
        size = 700
        nx.draw_networkx_nodes(self._g, pos, ax=ax, node_color=colours, node_size=size)
        for m, xy in pos.items():  # names a fixed distance under the nodes, wrapped, not clipped
            ax.annotate(
                _wrap(m),
                xy,
                xytext=(0, -14),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=9,
                annotation_clip=False,
            )
        nx.draw_networkx_edges(
            self._g, pos, ax=ax, arrows=True, arrowsize=15, node_size=size, edge_color="0.4"
        )
        for role in dict.fromkeys(self.roles.values()):
            ax.scatter([], [], color=_COLOURS[role], label=role)
        ax.legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.0))
        title = "may inform"
        if self.time_axis:
            title += f" (time axis: {self.time_axis})"
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-(tallest - 1) / 2 - 0.6, (tallest - 1) / 2 + 0.4)  # one row has height too
        stages = [float(st) for st in columns]
        ax.set_xlim(min(stages) - 0.6, max(stages) + 0.6)
        ax.set_axis_off()
        return ax


def _wrap(name: str, width: int = 14) -> str:
    """``name`` broken at underscores into lines of about ``width`` characters."""
    lines: list[str] = []
    for part in name.split("_"):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "_" + part
        else:
            lines.append(part if not lines else "_" + part)
    return "\n".join(lines)
