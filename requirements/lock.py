"""Keep ``requirements/lock.txt`` and an installed environment in step.

``make setup`` installs the project with the lock as pip constraints, so every fresh machine gets the versions the
suite passed with; a dependency's new release then cannot break it overnight (av 18.1.1 did, before the lock).
This script is run by the environment it inspects (``.venv/bin/python requirements/lock.py ...``):

- ``check``: the environment must hold exactly the lock's packages at the lock's versions; anything installed
  that the lock does not name means the lock is stale (a dependency added to pyproject.toml without ``make lock``).
- ``diff``: list what differs from the lock, for ``make check-latest`` (the newest versions the ranges allow).
- ``write``: rewrite the lock from this environment, for ``make lock`` once the suite passed in it.

Standard library only: it must run before anything else is installed.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

HEADER = """\
# The exact versions `make setup` installs (pip constraints), written by `make lock` from an environment in which
# the whole test suite passed. Do not edit by hand: `make check-latest` tries the newest versions the ranges in
# pyproject.toml allow, and `make lock` rewrites this file from them once the suite passes.
# torch is the CPU build (the local label, e.g. +cpu, is left out so that pip may take it from the machine's disk).
"""
# Written into the lock and compared by `check`: which packages a tree holds depends on the Python version and the
# machine (markers such as `python_version < "3.11"` for tomli, `platform_machine == "x86_64"` for decord).
ENVIRONMENT_PREFIX = "# environment: "
# The project itself (installed editable from this checkout) and the installers that come with every venv: not
# dependencies to pin (pinning pip would only slow setup).
NOT_PINNED = {"fastvideo-hf", "pip", "setuptools", "wheel"}


def normalize(name: str) -> str:
    """PEP 503 normalised name, so ``huggingface_hub`` and ``huggingface-hub`` are one package."""
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def release(version: str) -> str:
    """The version without its local label: ``2.13.0+cpu`` is the build of ``2.13.0`` for CPUs."""
    return version.split("+", 1)[0]


def installed() -> dict[str, str]:
    """Every distribution in this interpreter's environment, by normalised name, except ``NOT_PINNED``."""
    versions = {normalize(dist.metadata["Name"]): release(dist.version) for dist in metadata.distributions()}
    return {name: version for name, version in versions.items() if name not in NOT_PINNED}


def this_environment() -> str:
    """The Python version and machine a lock is made for, e.g. ``python3.11 Linux x86_64``."""
    return f"python{sys.version_info.major}.{sys.version_info.minor} {platform.system()} {platform.machine()}"


def read_environment(path: Path) -> str | None:
    """The environment line of the lock (None for a lock without one)."""
    for line in path.read_text().splitlines():
        if line.startswith(ENVIRONMENT_PREFIX):
            return line[len(ENVIRONMENT_PREFIX) :].strip()
    return None


def read_lock(path: Path) -> dict[str, str]:
    """``name==version`` lines of the lock (comments and blank lines skipped)."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        if not separator or not version.strip():
            raise SystemExit(f"{path}:{number}: expected name==version, got {line!r}")
        pins[normalize(name.strip())] = version.strip()
    return pins


def differences(lock: dict[str, str], env: dict[str, str]) -> list[str]:
    """One line per package whose installed version is not the locked one, sorted by name."""
    return version_changes(lock, env) + membership_changes(lock, env)


def version_changes(lock: dict[str, str], env: dict[str, str]) -> list[str]:
    """Packages installed at another version than the locked one."""
    both = sorted(set(lock) & set(env))
    return [f"{name}: locked {lock[name]}, installed {env[name]}" for name in both if lock[name] != env[name]]


def membership_changes(lock: dict[str, str], env: dict[str, str]) -> list[str]:
    """Packages the lock names and the environment lacks, or the reverse."""
    lines = []
    for name in sorted(set(lock) | set(env)):
        locked, have = lock.get(name), env.get(name)
        if have is None:
            lines.append(f"{name}: locked {locked}, not installed")
        elif locked is None:
            lines.append(f"{name}: {have} installed, not in the lock")
    return lines


def write_lock(path: Path, env: dict[str, str]) -> None:
    pins = "".join(f"{name}=={env[name]}\n" for name in sorted(env))
    path.write_text(f"{HEADER}{ENVIRONMENT_PREFIX}{this_environment()}\n{pins}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "diff", "write"], help="See the module docstring.")
    parser.add_argument("--lock", type=Path, default=Path(__file__).with_name("lock.txt"), help="The lock file.")
    args = parser.parse_args(argv)
    env = installed()
    if args.command == "write":
        write_lock(args.lock, env)
        print(f"wrote {len(env)} pins to {args.lock}")
        return 0
    lock = read_lock(args.lock)
    if args.command == "diff":
        lines = differences(lock, env)
        print(f"{len(lines)} packages differ from {args.lock}" + (":" if lines else ""))
        print("\n".join(f"  {line}" for line in lines))
        return 0
    lines = version_changes(lock, env)
    membership = membership_changes(lock, env)
    made_for = read_environment(args.lock)
    if made_for is not None and made_for != this_environment():
        # another Python or machine installs other packages through markers; the locked versions still hold
        if membership:
            print(f"note: the lock was made on {made_for}, this is {this_environment()}; unpinned here:")
            print("\n".join(f"  {line}" for line in membership))
    else:
        lines += membership
    if lines:
        print(f"this environment ({sys.prefix}) is not the lock {args.lock}:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in lines), file=sys.stderr)
        print("A dependency changed without `make lock`: run `make lock` (it tests the new versions first).")
        return 1
    print(f"environment matches {args.lock} ({len(env)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
