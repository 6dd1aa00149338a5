"""Materials domain: tables of processing, composition, structure and properties → cohorts.

* :func:`read_concrete`: concrete mixes (individual = mix) with compressive strength
  over age.
* :func:`read_nims`: steels (individual = steel) with composition, heat treatment,
  inclusions and fatigue / tensile / fracture strength and hardness.
* :class:`ProcessGraph`: which modalities may inform which (processing → structure →
  property).
* :func:`strength_at_ages`: a property measured over age → one static feature per
  canonical test age (``fc_28d``), for the static population model.

Any other table: :func:`twin.io.tables.read_table_cohort`.  See ``docs/materials.md``.
"""

from twin.materials.ages import (
    CONCRETE_AGES,
    age_feature,
    canonical_ages,
    feature_age,
    strength_at_ages,
)
from twin.materials.concrete import concrete_graph, read_concrete
from twin.materials.graph import GRAPH_ATTR, ROLES, ProcessGraph
from twin.materials.steel import read_nims, steel_graph

__all__ = [
    "CONCRETE_AGES",
    "GRAPH_ATTR",
    "ROLES",
    "ProcessGraph",
    "age_feature",
    "canonical_ages",
    "concrete_graph",
    "feature_age",
    "read_concrete",
    "read_nims",
    "steel_graph",
    "strength_at_ages",
]
