"""Materials domain: tables of processing, composition, structure and properties → cohorts.

* :func:`read_concrete`: concrete mixes (individual = mix) with compressive strength
  over age.
* :func:`read_nims`: steels (individual = steel) with composition, heat treatment,
  inclusions and fatigue / tensile / fracture strength and hardness.
* :class:`ProcessGraph`: which modalities may inform which (processing → structure →
  property).

Any other table: :func:`twin.io.tables.read_table_cohort`.  See ``docs/materials.md``.
"""

from twin.materials.concrete import concrete_graph, read_concrete
from twin.materials.graph import GRAPH_ATTR, ROLES, ProcessGraph
from twin.materials.steel import read_nims, steel_graph

__all__ = [
    "GRAPH_ATTR",
    "ROLES",
    "ProcessGraph",
    "concrete_graph",
    "read_concrete",
    "read_nims",
    "steel_graph",
]
