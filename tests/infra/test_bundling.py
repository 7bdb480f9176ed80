"""Local bundling without Docker: what goes into the asset, and its cache key."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from aws_cdk.assertions import Template
from infra.bundling import (
    CLI_ONLY,
    BundleSpec,
    LambdaBundle,
    _find_python,
    marker_environment,
    prune_distributions,
    prune_service_models,
    requirement_closure,
    static_imports,
)
from infra.config import SWEEPER_HANDLER, bundle_specs

from dmcp_aws.deployment import CATCH_ALL_HANDLER, Deployment
from tests.infra.conftest import ROOT

HANDLERS = ("dmcp_aws.catch_all.handler", "functions.example.handler.handler")


def _dist(site: Path, name: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    (info / "RECORD").write_text("".join(f"{p},," + "\n" for p in [*files, f"{info.name}/RECORD"]))
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    )


def test_requirements_leave_out_the_cli_and_are_pinned() -> None:
    requirements = LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS)).kit_requirements
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
    ).kit_requirements
    assert any(r.startswith("aws-lambda-powertools[tracer]==") for r in requirements), requirements


def test_the_probe_imports_what_a_traced_function_imports() -> None:
    """The handler imports the X-Ray SDK only where tracing can work (Lambda with active tracing):
    the probe runs it so, or pruning would drop the SDK and every traced function would fail."""
    from infra.bundling import BundleSpec, LambdaBundle

    imported = LambdaBundle(
        BundleSpec(repo_root=ROOT, handlers=("functions.example.handler.handler",))
    ).probe_imports()
    assert "aws_xray_sdk" in imported, sorted(imported)


# --- a server's own requirements (issue 8) ---------------------------------------------------


def test_a_servers_requirements_are_installed_after_the_kits_and_change_the_key() -> None:
    kit = LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS))
    own = LambdaBundle(BundleSpec(repo_root=ROOT, handlers=HANDLERS, requirements=("PyYAML>=6",)))
    assert own.requirements == [*kit.kit_requirements, "PyYAML>=6"]
    assert own.key != kit.key and own.dependencies_key != kit.dependencies_key


def test_closure_follows_dependencies_extras_and_markers(tmp_path: Path) -> None:
    _dist(tmp_path, "app_lib", {"app_lib/__init__.py": ""}, ("helper>=1", "fancy; extra == 'fast'"))
    _dist(
        tmp_path,
        "helper",
        {"helper.py": ""},
        ("win_only; sys_platform == 'win32'", "old; python_version < '3.9'"),
    )
    _dist(tmp_path, "fancy", {"fancy/__init__.py": ""}, ("arm_only; platform_machine == 'aarch64'",))
    for name in ("win_only", "old", "arm_only", "unrelated"):
        _dist(tmp_path, name, {f"{name}/__init__.py": ""})
    arm = marker_environment("manylinux2014_aarch64", "3.13")
    assert requirement_closure(tmp_path, ["App-Lib"], arm) == {"app-lib", "helper"}
    assert requirement_closure(tmp_path, ["app_lib[fast]"], arm) == {"app-lib", "helper", "fancy", "arm-only"}
    x86 = marker_environment("manylinux2014_x86_64", "3.13")
    assert requirement_closure(tmp_path, ["app_lib[fast]"], x86) == {"app-lib", "helper", "fancy"}
    assert requirement_closure(tmp_path, ["app_lib; python_version < '3.0'"], x86) == set()


def test_prune_never_removes_what_a_servers_requirements_need(tmp_path: Path) -> None:
    _dist(tmp_path, "used", {"used/__init__.py": ""})
    _dist(tmp_path, "lazy_lib", {"lazy_lib/__init__.py": "", "lazy_lib/_speedups.so": ""})
    _dist(tmp_path, "kit_unused", {"kit_unused/__init__.py": ""})
    kept, pruned = prune_distributions(tmp_path, {"used"}, keep={"lazy-lib"})
    assert kept == ["lazy_lib-1.0", "used-1.0"] and pruned == ["kit_unused-1.0"]
    assert (tmp_path / "lazy_lib" / "_speedups.so").exists()


def test_static_imports_see_function_bodies_and_skip_relative_ones(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tool.py").write_text(
        "import os.path\nfrom . import sibling\n\n"
        "def run():\n    import yaml\n    from jsonschema.validators import validate\n"
        "    try:\n        import ujson as json\n    except ImportError:\n        import json\n"
    )
    (tmp_path / "single.py").write_text("import httpx\n")
    assert static_imports([tmp_path / "pkg", tmp_path / "single.py"]) == {
        "os", "yaml", "jsonschema", "ujson", "json", "httpx"
    }  # fmt: skip


def test_each_server_with_requirements_gets_its_own_asset() -> None:
    deployment = Deployment.parse(
        {
            "name": "acme",
            "servers": [
                {"name": "example"},
                {
                    "name": "yamlish",
                    "handler": "functions.example.handler.handler",
                    "requirements": ["PyYAML"],
                },
            ],
        }
    )
    shared, own = bundle_specs(deployment, ROOT)
    assert shared.handlers == tuple(
        sorted({CATCH_ALL_HANDLER, SWEEPER_HANDLER, "functions.example.handler.handler"})
    )
    assert shared.requirements == () and list(own) == ["yamlish"]
    assert own["yamlish"].requirements == ("PyYAML",)
    assert own["yamlish"].handlers == ("functions.example.handler.handler",)
    assert own["yamlish"].platform == shared.platform == "manylinux2014_aarch64"

    import aws_cdk as cdk
    from infra.bundling import lambda_code
    from infra.stack import DmcpStack, DmcpStackProps

    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = DmcpStack(
        app,
        "acme",
        props=DmcpStackProps(
            deployment=deployment,
            code=lambda_code(LambdaBundle(shared)),
            server_code={"yamlish": lambda_code(LambdaBundle(own["yamlish"]))},
        ),
    )
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    keys = {f["Properties"]["FunctionName"]: f["Properties"]["Code"]["S3Key"] for f in functions.values()}
    assert keys["acme-example"] == keys["acme-unrouted"] == keys["acme-orphan_sweeper"]
    assert keys["acme-yamlish"] != keys["acme-example"]


LAZY_SERVER = '''
    """A server whose tools import their libraries inside the function body (no probe sees that)."""

    from typing import Any

    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("lazy")


    @mcp.tool()
    def parse_yaml(text: str) -> dict[str, Any]:
        import yaml  # PyYAML: not a dependency of the kit at all

        return {"parsed": yaml.safe_load(text), "from": yaml.__file__}


    @mcp.tool()
    def conforms(instance: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
        import jsonschema  # not in `requirements`; in the kit's closure (via mcp), the probe would prune it

        valid = jsonschema.Draft202012Validator(schema).is_valid(instance)
        return {"valid": valid, "from": jsonschema.__file__}
'''

CALL_FROM_THE_ASSET = """
import asyncio, json, sys

asset = sys.argv[1]
sys.path.insert(0, asset)
assert not [p for p in sys.path if "site-packages" in p], sys.path

from lazytools.handler import handler  # the Lambda init: what the function imports first
from lazytools import server

assert "yaml" not in sys.modules and "jsonschema" not in sys.modules, "imported too early"
direct = server.parse_yaml("a: [1, 2]")
via_mcp = asyncio.run(server.mcp.call_tool("conforms", {"instance": {"n": 1}, "schema": {"required": ["n"]}}))
print(json.dumps({
    "direct": direct,
    "via_mcp": via_mcp.structured_content,
    "error": via_mcp.is_error,
    "modules": {n: getattr(sys.modules.get(n), "__file__", None) for n in ("yaml", "jsonschema", "rpds")},
}))
"""


def test_a_tool_that_imports_a_bundled_package_lazily_works_from_the_asset(tmp_path: Path) -> None:
    """Build a real asset for this machine and run the handler from it with nothing else on the path."""
    python = _find_python("3.13")
    if python is None:
        pytest.fail("needs a python3.13 (the Lambda runtime's version) on PATH or in pyenv to run the asset")
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[
        platform.machine().lower()
    ]
    root = tmp_path / "repo"
    (root / "lazytools").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "transport").symlink_to(ROOT / "transport")
    (root / "lazytools" / "__init__.py").write_text("")
    (root / "lazytools" / "server.py").write_text(textwrap.dedent(LAZY_SERVER))
    (root / "lazytools" / "handler.py").write_text(
        "from dmcp_aws.lambda_handler import make_lambda_handler\n"
        "from lazytools.server import mcp\n\nhandler = make_lambda_handler(mcp)\n"
    )
    spec = BundleSpec(
        repo_root=root,
        handlers=("lazytools.handler.handler",),
        platform=f"manylinux2014_{machine}",
        requirements=("PyYAML>=6",),
        cache_dir=ROOT / ".build" / "lambda-tests",  # kept between runs: a rebuild only when inputs change
    )
    bundle = LambdaBundle(spec)
    report = bundle.report()
    asset = bundle.path
    assert report.requirements == ["PyYAML>=6"]
    # PyYAML because the server requires it; jsonschema (and what it needs) because its code imports it
    assert {"pyyaml", "jsonschema", "referencing", "rpds-py"} <= set(report.protected), report
    assert not {"pyyaml", "jsonschema", "rpds-py"} & {
        p.rpartition("-")[0].lower().replace("_", "-") for p in report.pruned
    }
    assert (asset / "lazytools" / "server.py").exists() and not (asset / "dmcp_aws" / "cli.py").exists()

    env = {
        "PATH": os.environ.get("PATH", ""),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", CALL_FROM_THE_ASSET, str(asset)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["direct"]["parsed"] == {"a": [1, 2]}
    assert (
        result["via_mcp"] == {"valid": True, "from": result["modules"]["jsonschema"]} and not result["error"]
    )
    for name, file in result["modules"].items():
        assert file and Path(file).resolve().is_relative_to(asset.resolve()), (name, file)
