"""Demo datasets shipped inside the package (small excerpts of public data).

See ``twin/data/demo/README.md`` for sources and licences.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from twin.cohort import Cohort

ROSMAP_BLOCKS = ("mrna", "methylation", "mirna")


def demo_dir() -> Path:
    """Folder holding the demo data."""
    return Path(str(resources.files("twin") / "data" / "demo"))


def synthea_demo_path() -> Path:
    """Folder of 30 Synthea FHIR R4 bundles (``*.json.gz``), for :func:`twin.read_fhir`."""
    return demo_dir() / "fhir"


def rosmap_tables() -> dict[str, pd.DataFrame]:
    """ROSMAP excerpt: ``{block: DataFrame}`` (245 samples × 50 features), indexed by sample id."""
    folder = demo_dir() / "omics"
    return {b: pd.read_csv(folder / f"rosmap_{b}.csv", index_col=0) for b in ROSMAP_BLOCKS}


def load_rosmap() -> Cohort:
    """ROSMAP excerpt as a Cohort with three static omics modalities and the AD/NC label."""
    labels = pd.read_csv(demo_dir() / "omics" / "rosmap_labels.csv", index_col=0)
    return Cohort.from_tables(
        rosmap_tables(),
        covariates=labels.rename(columns={"label": "diagnosis"}),
        attrs={"twin_source": "ROSMAP via txWang/MOGONET (MIT); demo excerpt"},
    )


def concrete_csv_path() -> Path:
    """Path of the UCI concrete compressive strength table (CC BY 4.0)."""
    return demo_dir() / "materials" / "concrete.csv"


def lesion_demo_path() -> Path:
    """Lesion-size trial excerpt: every other patient of Study 4 (both arms), 282 rows (MIT).

    Read it with :func:`twin.read_lesion_trials`.
    """
    return demo_dir() / "oncology" / "lesion_study4.csv"


def lesion_demo_scenarios_path() -> Path:
    """Scenario YAML of the two arms of :func:`lesion_demo_path`'s trial (Study 4), for
    twins of a model with agents ``Study_4_Arm_1`` and ``Study_4_Arm_2`` (as ``twin demo``
    trains); days since treatment start (``origin="reference"``)."""
    return demo_dir() / "oncology" / "lesion_study4_arms.yaml"
