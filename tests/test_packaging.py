"""The lock file agrees with pyproject.toml, so installing from it installs what the project names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements: list[str]) -> dict[str, str]:
    """{normalised name: version} of ``name==version`` requirements (markers ignored)."""
    pins = {}
    for requirement in requirements:
        found = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", requirement)
        if found:
            pins[re.sub(r"[-_.]+", "-", found[1]).lower()] = found[2]
    return pins


def test_every_pin_in_pyproject_is_the_version_the_lock_file_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    wanted = _pins(named)
    locked = _pins((ROOT / "requirements" / "lock.txt").read_text().splitlines())
    assert len(wanted) == len(named), "every dependency in pyproject.toml is pinned with =="
    differ = {
        name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version
    }
    assert not differ, f"pyproject.toml and requirements/lock.txt differ (run make lock): {differ}"
