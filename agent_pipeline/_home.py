"""Point ``DAGSTER_HOME`` into ``AGENT_PIPELINE_HOME`` for every Python process of the venv.

``make setup`` installs a one-line ``.pth`` file that imports this module at interpreter start,
so ``dagster``, ``dagster-daemon``, ``agent-pipeline`` and Dagster's step subprocesses all see
the same instance without anyone exporting variables. An explicit ``DAGSTER_HOME`` wins.
The instance's ``dagster.yaml`` is copied from the repository's ``dagster.yaml`` when missing (and, in the
folder this module manages, when outdated); an explicit ``DAGSTER_HOME``'s file is never replaced.
Kept tiny and import-free beyond the standard library: it runs in every process.
"""

from __future__ import annotations

import os
from pathlib import Path


def apply() -> None:
    from agent_pipeline.lib.core.settings import resolve_home  # standard library only

    root = Path(__file__).resolve().parents[1]
    home = resolve_home(os.environ.get("AGENT_PIPELINE_HOME"))  # relative = to the current directory
    managed = not os.environ.get("DAGSTER_HOME")
    if managed:
        os.environ["DAGSTER_HOME"] = str(home / "dagster")
    target = Path(os.environ["DAGSTER_HOME"])
    source = root / "dagster.yaml"
    try:
        wanted = source.read_text()
        present = (target / "dagster.yaml").is_file()
        # An explicit DAGSTER_HOME (e.g. production's Postgres dagster.yaml) is only ever given a
        # file when it has none; the folder we manage follows the repository's file.
        if not present or (managed and (target / "dagster.yaml").read_text() != wanted):
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / f".dagster.yaml.{os.getpid()}"
            tmp.write_text(wanted)
            os.replace(tmp, target / "dagster.yaml")
    except OSError:
        pass  # read-only or missing checkout: Dagster then reports the instance problem itself


apply()
