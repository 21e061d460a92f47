"""`infra/bundle.py`: what `make deploy` hands SAM is the package and its runtime requirements."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.infra.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("logfan_infra_bundle", ROOT / "infra" / "bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_are_the_runtime_dependencies_pinned_to_what_was_tested(bundle: ModuleType) -> None:
    requirements: list[str] = bundle.runtime_requirements()
    names = {line.split("==")[0].split("[")[0].lower() for line in requirements}

    assert {
        "boto3",
        "aws-lambda-powertools",
        "aws-xray-sdk",
        "regex",
        "pydantic",
        "pydantic-settings",
        "pyyaml",
    } <= names
    assert all("==" in line for line in requirements)
    assert not any(dev in line for line in requirements for dev in ("moto", "pytest", "cfn-lint"))


def test_a_dependency_whose_marker_is_false_on_lambda_is_left_out(bundle: ModuleType, tmp_path: Path) -> None:
    # Given runtime dependencies with markers for x86_64 only, for arm64 Linux, and for an old Python
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[project]\n"
        "dependencies = [\n"
        '  "boto3>=1.35",\n'
        "  \"x86-only>=1; platform_machine == 'x86_64'\",\n"
        "  \"arm-only[fast]>=2; sys_platform == 'linux' and platform_machine == 'aarch64'\",\n"
        "  \"backport>=1; python_version < '3.9'\",\n"
        "]\n",
        encoding="utf-8",
    )

    # When the requirements are written, unpinned so the test does not depend on what is installed
    requirements = bundle.runtime_requirements(pyproject, pin=False)

    # Then only what applies on python3.12 / arm64 Lambda is kept, without its marker
    assert requirements == ["boto3>=1.35", "arm-only[fast]>=2"]


def test_the_markers_describe_the_runtime_the_template_deploys(bundle: ModuleType) -> None:
    function = load_template(ROOT / "infra" / "template.yaml")["Globals"]["Function"]

    assert function["Runtime"] == bundle.LAMBDA_RUNTIME == f"python{bundle.LAMBDA_MARKERS['python_version']}"
    assert function["Architectures"] == [bundle.LAMBDA_ARCHITECTURE]
    assert (
        bundle.LAMBDA_MARKERS["platform_machine"]
        == {"arm64": "aarch64", "x86_64": "x86_64"}[bundle.LAMBDA_ARCHITECTURE]
    )


def test_the_staged_directory_holds_the_package_and_requirements(bundle: ModuleType, tmp_path: Path) -> None:
    out: Path = bundle.stage(tmp_path / "lambda")

    assert (out / "pipeline" / "handlers" / "fan_out.py").is_file()
    assert not list(out.rglob("__pycache__"))
    assert (out / "requirements.txt").read_text(encoding="utf-8").splitlines() == bundle.runtime_requirements()


def test_the_template_builds_from_the_staged_directory(bundle: ModuleType) -> None:
    template = load_template(ROOT / "infra" / "template.yaml")

    code_uri = (ROOT / "infra" / template["Globals"]["Function"]["CodeUri"]).resolve()

    assert code_uri == bundle.DEFAULT_OUT
    assert code_uri.relative_to(ROOT).parts[0] == "build"  # gitignored
