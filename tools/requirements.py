"""Print the requirements pyproject.toml declares, one per line, for pip.

Used where CI installs the wheel without its dependencies: ``./dev.sh
test-keras`` (a Keras below the supported range, which pip would refuse) and
``./dev.sh test-backends`` (JAX without TensorFlow, as docs/guides/backends.md
tells users to install it). The other dependencies and the test extra still
come from pyproject.toml, so those jobs cannot drift from what the package
declares.

Usage::

    python tools/requirements.py [--without NAME ...] [--extra NAME ...]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def requirements(without: list[str], extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    skipped = {name.lower() for name in without}
    return [r for r in wanted if re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() not in skipped]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--without", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME")
    args = parser.parse_args()
    print("\n".join(requirements(args.without, args.extra)))


if __name__ == "__main__":
    main()
