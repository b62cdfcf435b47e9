"""Check a built wheel and sdist against the source tree.

The wheel must hold exactly the package's files from ``src/keras_safe``
(every module of every subpackage, ``py.typed``) plus its ``.dist-info``
(which must carry the license file and the declared dependencies), and
nothing else: no tests, examples, caches or stray build products. The sdist
must hold the package, the tests, the docs pages (whose examples the tests
run), the license and ``pyproject.toml``, so a wheel built from it is the
same wheel.

Usage::

    python tools/check_dist.py dist/keras_safe-0.1.0-py3-none-any.whl dist/keras_safe-0.1.0.tar.gz

Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
import tarfile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "keras_safe"
SHIPPED_SUFFIXES = {".py", ".typed"}


def tree_files() -> set[str]:
    """The package's files as wheel paths (``keras_safe/_ops/load.py`` ...)."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix in SHIPPED_SUFFIXES and "__pycache__" not in path.parts
    }


def check_wheel(wheel: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
        package = names - info
        expected = tree_files()
        problems += [f"wheel lacks {name}" for name in sorted(expected - package)]
        extra = sorted(package - expected)
        problems += [f"wheel has {name}, not in src/keras_safe" for name in extra]
        if not any(n.endswith("/licenses/LICENSE") for n in info):
            problems.append("wheel's .dist-info has no licenses/LICENSE")
        metadata_name = next((n for n in info if n.endswith("/METADATA")), None)
        if metadata_name is None:
            return [*problems, "wheel has no METADATA"]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    if metadata.get("License-Expression") != declared["license"]:
        problems.append(
            f"METADATA License-Expression is {metadata.get('License-Expression')!r}, "
            f"pyproject.toml says {declared['license']!r}"
        )
    requires = set(metadata.get_all("Requires-Dist") or [])
    problems += [
        f"METADATA lacks dependency {dep!r}"
        for dep in declared["dependencies"]
        if not any(r.replace(" ", "").startswith(dep.replace(" ", "")) for r in requires)
    ]
    return problems


def check_sdist(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"pyproject.toml", "LICENSE", "README.md", "SECURITY.md", "CHANGELOG.md"}
    wanted |= {"CONTRIBUTING.md", "mkdocs.yml"}
    wanted |= {f"src/{name}" for name in tree_files()}
    # The docs pages: the tests run their examples and check them against the code.
    wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*") if p.is_file()}
    wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py")}
    return [f"sdist lacks {name}" for name in sorted(wanted - names)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("sdist", type=Path)
    args = parser.parse_args(argv)
    problems = check_wheel(args.wheel) + check_sdist(args.sdist)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.wheel.name}: {len(tree_files())} package files, as in src/keras_safe")
        print(f"{args.sdist.name}: package, tests, license and docs present")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
