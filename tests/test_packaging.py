"""Packaging stays consistent: ranges admit the lock, conda pins match it, README matches CI."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def lock_versions() -> dict[str, str]:
    versions = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split(";")[0].strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock line {line!r} is not pinned with =="
            versions[canonicalize_name(name)] = version
    return versions


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_dependency_range_admits_the_locked_version():
    locked = lock_versions()
    requirements = project()["dependencies"] + [
        item for extra in project()["optional-dependencies"].values() for item in extra
    ]
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is a dependency but not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside pyproject's {requirement.specifier}"
        )


def test_conda_environment_installs_the_lock():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    assert pip_section == ["-r requirements.lock", "-e ."], "environment.yml: install exactly requirements.lock, then the project"


def test_every_imported_package_is_declared():
    """Each third-party package the code imports is a direct dependency, not only a transitive one."""
    import ast
    from importlib import metadata

    imported = set()
    for package in ("mtlue", "victims"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name not in ("mtlue", "victims")}
    distributions = metadata.packages_distributions()
    declared = {canonicalize_name(Requirement(item).name) for item in project()["dependencies"]}
    missing = {
        name: distributions.get(name) for name in third_party
        if not declared & {canonicalize_name(dist) for dist in distributions.get(name, [name])}
    }
    assert not missing, f"imported but not declared in pyproject.toml's dependencies: {missing}"


def test_readme_quick_start_matches_ci():
    ci_script = (ROOT / ".ci" / "run").read_text()
    (command,) = re.findall(r'^TEST_COMMAND="(.+)"$', ci_script, flags=re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(python3 -m venv .+)$", quick_start, flags=re.MULTILINE)
    assert len(commands) == 2, "the quick start must be exactly two commands"
    assert commands[1] == command
    assert commands[0].endswith("snakemake --cores all")
