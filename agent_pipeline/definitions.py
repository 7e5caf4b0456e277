"""The code location: every definition under ``agent_pipeline/defs/`` is loaded automatically."""

import warnings
from pathlib import Path

import dagster as dg

# The dataset assets version their data with Output(data_version=...), a beta parameter whose
# BetaWarning would otherwise print three times in every lifecycle run's console.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=r"Parameter `data_version`")


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
