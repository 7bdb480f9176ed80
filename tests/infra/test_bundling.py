"""Local bundling without Docker: what goes into the asset, and its cache key."""

from __future__ import annotations

from pathlib import Path

from infra.bundling import (
    CLI_ONLY,
    BundleSpec,
    LambdaBundle,
    prune_distributions,
    prune_service_models,
)

from tests.infra.conftest import ROOT

HANDLERS = ("dmcp_aws.catch_all.handler", "functions.example.handler.handler")


def _dist(site: Path, name: str, files: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    (info / "RECORD").write_text("".join(f"{p},," + "\n" for p in [*files, f"{info.name}/RECORD"]))


def test_requirements_leave_out_the_cli_and_are_pinned() -> None:
    requirements = LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS)).requirements
    names = {r.split("==")[0].split("[")[0].lower() for r in requirements}
    assert not names & CLI_ONLY
    assert {"mcp", "aioboto3", "pydantic", "aws-lambda-powertools"} <= names
    assert all("==" in r for r in requirements)


def test_key_changes_with_handlers_and_platform() -> None:
    base = BundleSpec(repo_root=ROOT, handlers=HANDLERS)
    key = LambdaBundle(base).key
    assert key == LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS)).key
    assert key != LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS[:1])).key
    assert (
        key
        != LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS, platform="manylinux2014_x86_64")).key
    )


def test_prune_keeps_imported_distributions_and_shared_namespaces(tmp_path: Path) -> None:
    _dist(tmp_path, "used", {"used/__init__.py": "", "used.libs/x.so": ""})
    _dist(tmp_path, "unused", {"unused/__init__.py": "", "unused_ext.cpython-313-aarch64-linux-gnu.so": ""})
    _dist(tmp_path, "ns_used", {"ns/a/__init__.py": ""})
    _dist(tmp_path, "ns_unused", {"ns/b/__init__.py": ""})
    kept, pruned = prune_distributions(tmp_path, {"used", "ns"})
    assert kept == ["ns_unused-1.0", "ns_used-1.0", "used-1.0"]  # `ns` is imported: both halves stay
    assert pruned == ["unused-1.0"]
    assert not (tmp_path / "unused").exists() and not (tmp_path / "unused-1.0.dist-info").exists()
    assert not list(tmp_path.glob("unused_ext*"))
    assert (tmp_path / "used.libs" / "x.so").exists()


def test_prune_service_models(tmp_path: Path) -> None:
    for service in ("sqs", "sns", "ec2"):
        (tmp_path / "botocore" / "data" / service).mkdir(parents=True)
    (tmp_path / "botocore" / "data" / "endpoints.json").write_text("{}")
    prune_service_models(tmp_path)
    assert sorted(p.name for p in (tmp_path / "botocore" / "data").iterdir()) == [
        "endpoints.json",
        "sns",
        "sqs",
    ]


def test_trim_cache_keeps_the_newest(tmp_path: Path) -> None:
    import os

    from infra.bundling import trim_cache

    for age, name in enumerate(["asset-a", "asset-b", "asset-c", "deps-a"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 - age, 1000 - age))
    trim_cache(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asset-a", "asset-b", "deps-a"]


def test_requirements_keep_their_extras() -> None:
    """`aws-lambda-powertools[tracer]` must bring aws-xray-sdk into the asset (the Tracer needs it)."""
    from infra.bundling import BundleSpec, LambdaBundle

    requirements = LambdaBundle(
        BundleSpec(repo_root=ROOT, handlers=("functions.example.handler.handler",))
    ).requirements
    assert any(r.startswith("aws-lambda-powertools[tracer]==") for r in requirements), requirements
