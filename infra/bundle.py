"""Stage the Lambda code for `sam build`: the `pipeline` package plus a requirements.txt.

SAM's Python builder installs dependencies only from a requirements.txt beside the code (it does not
read pyproject.toml), so this writes one from `[project].dependencies`, each pinned to the version
installed in the environment that ran the tests. The result goes to a gitignored directory that the
template's `CodeUri` names (`build/lambda`).

Usage: python infra/bundle.py [OUT_DIR]
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "lambda"

LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
"""What `infra/template.yaml` deploys on (Globals.Function); a test keeps them equal."""
LAMBDA_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
"""Environment markers as the Lambda runtime evaluates them: a dependency whose marker is false there
(an x86_64-only wheel, say) is left out rather than handed to a builder that may run elsewhere."""


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml", *, pin: bool = True) -> list[str]:
    """`[project].dependencies` that apply on Lambda, pinned (`name[extras]==installed`) when installed."""
    dependencies: list[str] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    lines = []
    for line in dependencies:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(LAMBDA_MARKERS):
            continue
        requirement.marker = None
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        try:
            version = metadata.version(requirement.name) if pin else None
        except metadata.PackageNotFoundError:
            version = None
        lines.append(f"{requirement.name}{extras}=={version}" if version else str(requirement))
    return lines


def stage(out: Path = DEFAULT_OUT, *, pin: bool = True) -> Path:
    """A fresh `out` holding `pipeline/` (without caches) and `requirements.txt`."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(ROOT / "pipeline", out / "pipeline", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out / "requirements.txt").write_text("\n".join(runtime_requirements(pin=pin)) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    target = stage(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_OUT)
    sys.stdout.write(f"staged Lambda code in {target}\n")
