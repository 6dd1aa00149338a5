"""The top-level ``twin`` namespace: lazy names and sub-packages, tab completion."""

from __future__ import annotations

import subprocess
import sys


def test_subpackages_are_attributes_after_a_plain_import_and_dir_is_clean():
    code = (
        "import sys, twin\n"
        "assert 'twin.materials_twins' not in sys.modules\n"  # still lazy
        "assert callable(twin.materials_twins.sweep) and callable(twin.plot.plot_twin)\n"
        "names = dir(twin)\n"
        "assert {'materials', 'materials_twins', 'plot', 'read_fhir', 'TwinModel'} <= set(names)\n"
        "assert not {'importlib', 'annotations', 'TYPE_CHECKING'} & set(names)\n"
        "try:\n"
        "    twin.nonexistent\n"
        "except AttributeError as e:\n"
        "    assert \"no attribute 'nonexistent'\" in str(e)\n"
        "else:\n"
        "    raise AssertionError\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
