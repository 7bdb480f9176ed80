"""Local bundling of the worker functions' code (no Docker), cached between synths.

The asset is the Lambda task root: `functions/` (and the top-level package of every handler),
the `dmcp_aws` package (without the CLI and the local stack), and the third-party distributions
the functions need, installed from manylinux wheels for the Lambda platform:

- the kit's own dependencies (`pyproject.toml`), pruned to what a probe run of the handlers
  imports — pruning only ever removes a distribution of the kit's own dependency closure;
- the server's own `requirements` (deployment description), kept whole together with every
  distribution they need, whatever the probe saw: a server may import them anywhere, also
  inside a function body, where no probe can see it;
- likewise every distribution an `import` statement anywhere in the server's code names (a
  static scan, function bodies included) with what it needs, unless the worker itself imported
  it in the probe run (`mcp`, `boto3`, …): a server that uses parts of those the worker does not
  (mcp's HTTP client, boto3's S3 transfers, AWS services other than the worker's) lists them in
  `requirements`.

    >>> spec = BundleSpec(repo_root=Path("."), handlers=("functions.example.handler.handler",),
    ...                   requirements=("PyYAML>=6",))
    >>> bundle = LambdaBundle(spec)
    >>> bundle.build()          # .build/lambda/asset-<key>/, reused while nothing changes
    >>> lambda_code(bundle)     # the `aws_lambda.Code` for the CDK app

Dependency wheels come from the package index pip is configured with; set `PIP_NO_INDEX=1` and
`PIP_FIND_LINKS=<wheelhouse>` to build with no network at all.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from dmcp_aws.deployment import Deployment

BUNDLER_VERSION: Final = "5"
"""Bumped whenever the way a bundle is made changes, so cached bundles are rebuilt."""

CLI_ONLY: Final = frozenset({"typer", "rich"})
"""Project dependencies only the `dmcp` command imports."""

EXCLUDED_SOURCES: Final = ("cli.py", "cli", "local", "deployed.py")
"""Parts of `dmcp_aws` no handler imports (the command, the embedded stack, stack lookup)."""

BOTOCORE_SERVICES: Final = ("sqs", "sns", "sts", "dynamodb", "xray")
"""The service models a worker can load; botocore's other ~400 are left out."""

CACHE_KEEP: Final = 4
"""Built assets (and dependency sets) kept in the cache, newest first."""

KIT_ROOT: Final = Path(__file__).resolve().parents[1]
"""The repository `infra` belongs to (the probe is `infra.probe`)."""

_IGNORED: Final = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
_PROBE_ENV: Final = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # a closed loopback port: replies fail fast, nothing leaves
    "AWS_MAX_ATTEMPTS": "1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "DMCP_REPLY_PREFIX": "dmcp-probe-reply-",
    "DMCP_IDEMPOTENCY_TABLE": "dmcp-probe-idempotency",  # exercise the ledger's imports too
    "DMCP_CONNECTION_PREFIX": "dmcp-probe-reply-conn-",  # the sweeper lists queues (and fails fast)
    "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    # As in a Lambda function with active tracing: the handler imports the X-Ray SDK only where a
    # daemon address is set (a loopback port; tracing itself stays disabled, nothing is sent).
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def wheel_platform(deployment: Deployment) -> str:
    """The manylinux wheel tag for the deployment's function architecture."""
    return {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}[
        deployment.lambda_architecture
    ]


class BundlingError(RuntimeError):
    """The asset could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class BundleSpec:
    """What to bundle and for which platform."""

    repo_root: Path
    handlers: tuple[str, ...]
    platform: str = "manylinux2014_aarch64"
    python_version: str = "3.13"
    cache_dir: Path | None = None
    """Defaults to `<repo_root>/.build/lambda` (gitignored, independent of `cdk.out`)."""
    requirements: tuple[str, ...] = ()
    """The server's own requirements (pip requirement strings): bundled, and never pruned."""

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.repo_root / ".build" / "lambda"


@dataclass
class BundleReport:
    """What went into a bundle; written next to it as `asset-<key>.json`."""

    path: str
    size_bytes: int
    files: int
    kept: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    compiled_with: str | None = None
    requirements: list[str] = field(default_factory=list)
    """The server's own requirements."""
    protected: list[str] = field(default_factory=list)
    """Distributions kept whole because the server's requirements or its code's imports need them."""


class LambdaBundle:
    """Builds (or reuses) the asset directory for `spec`."""

    def __init__(self, spec: BundleSpec) -> None:
        self.spec = spec

    @cached_property
    def kit_requirements(self) -> list[str]:
        """The project's runtime dependencies without the CLI-only ones, pinned to what is installed."""
        pyproject = tomllib.loads((self.spec.repo_root / "pyproject.toml").read_text())
        pinned = []
        for requirement in pyproject["project"]["dependencies"]:
            name = _dist_name(requirement)
            if _normalise(name) in CLI_ONLY:
                continue
            extras = _extras(requirement)
            pinned.append(f"{name}{extras}=={_installed(name)}" if _installed(name) else requirement)
        return sorted(pinned)

    @property
    def requirements(self) -> list[str]:
        """Everything pip installs into the asset: the kit's requirements, then the server's own."""
        return [*self.kit_requirements, *self.spec.requirements]

    @cached_property
    def constraints(self) -> list[str]:
        """Every distribution of this environment at its installed version: what was tested ships.

        This covers a server's requirements that are installed here (where `dmcp dev` ran them);
        one that is not is resolved from the package index."""
        own = _normalise("dmcp-aws")
        found = {
            _normalise(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]
        }
        return sorted(f"{name}=={version}" for name, version in found.items() if name != own)

    @cached_property
    def dependencies_key(self) -> str:
        spec = self.spec
        return _digest(
            [BUNDLER_VERSION, spec.platform, spec.python_version, *self.requirements, *self.constraints]
        )

    @cached_property
    def key(self) -> str:
        """The asset's hash: its dependencies, its sources and its handlers."""
        return _digest(
            [
                self.dependencies_key,
                *self.spec.handlers,
                *_source_digests(self.spec.repo_root, self.spec.handlers),
            ]
        )

    @property
    def path(self) -> Path:
        return self.spec.cache / f"asset-{self.key[:20]}"

    def build(self) -> Path:
        """The asset directory, built unless a complete one for the same key exists."""
        if (self.path / ".complete").exists():
            return self.path
        spec = self.spec
        dependencies = self.install_dependencies()
        environment = marker_environment(spec.platform, spec.python_version)
        imported = self.probe_imports()
        required = requirement_closure(dependencies, spec.requirements, environment)
        # What the server's code imports anywhere (function bodies too, which the probe never runs)
        # is kept with what it needs; what the worker itself imported is kept by the probe already.
        scanned = static_imports(_handler_sources(spec.repo_root, spec.handlers)) - imported
        protected = required | requirement_closure(
            dependencies, distributions_providing(dependencies, scanned), environment
        )
        work = self._fresh(spec.cache / f".asset-{self.key[:20]}-{os.getpid()}")
        shutil.copytree(dependencies, work, dirs_exist_ok=True, ignore=_IGNORED)
        kept, pruned = prune_distributions(work, imported, keep=protected)
        if "botocore" not in required:  # a server that requires boto3 itself may call any service
            prune_service_models(work)
        _copy_sources(spec.repo_root, work, spec.handlers)
        compiled_with = _precompile(work, spec.python_version)
        files = [p for p in work.rglob("*") if p.is_file()]
        report = BundleReport(
            str(self.path),
            sum(p.stat().st_size for p in files),
            len(files),
            kept,
            pruned,
            compiled_with,
            list(spec.requirements),
            sorted(protected),
        )
        (work / ".complete").touch()
        _publish(work, self.path)
        self.path.with_suffix(".json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
        trim_cache(self.spec.cache)
        return self.path

    def report(self) -> BundleReport:
        """The report of the built bundle (builds it first if needed)."""
        self.build()
        return BundleReport(**json.loads(self.path.with_suffix(".json").read_text()))

    def install_dependencies(self) -> Path:
        """pip-install the kit's pinned requirements and the server's own for the Lambda platform, in
        one resolution (cached by requirement set)."""
        spec = self.spec
        target = spec.cache / f"deps-{spec.platform}-{self.dependencies_key[:20]}"
        if (target / ".complete").exists():
            return target
        work = self._fresh(spec.cache / f".deps-{self.dependencies_key[:20]}-{os.getpid()}")
        requirements = work.with_suffix(".requirements.txt")
        constraints = work.with_suffix(".constraints.txt")
        requirements.write_text("\n".join(self.requirements) + "\n")
        constraints.write_text("\n".join(self.constraints) + "\n")
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(work), "--platform", spec.platform, "--python-version", spec.python_version,
            "--implementation", "cp", "--only-binary=:all:", "-r", str(requirements), "-c", str(constraints),
        ]  # fmt: skip
        step = "installing the Lambda dependencies"
        if spec.requirements:
            step += (
                f" (the server's requirements {', '.join(spec.requirements)} are resolved together with "
                "the kit's and pinned to the versions installed in this environment, if installed)"
            )
        try:
            _run(command, step, timeout=900)
        finally:
            requirements.unlink(missing_ok=True)
            constraints.unlink(missing_ok=True)
        shutil.rmtree(work / "bin", ignore_errors=True)
        (work / ".complete").touch()
        _publish(work, target)
        return target

    def probe_imports(self) -> set[str]:
        """Top-level modules the handlers import when they serve requests (run in this environment)."""
        root = self.spec.repo_root
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMCP_", "POWERTOOLS_"))}
        path = [str(root), str(root / "transport"), str(KIT_ROOT)]
        env.update(_PROBE_ENV, PYTHONPATH=os.pathsep.join(dict.fromkeys(path)))
        step = "probing the handlers"
        if self.spec.requirements:
            step += (
                " (the probe imports the handlers in this environment: install the server's requirements "
                f"here too, e.g. pip install {' '.join(repr(r) for r in self.spec.requirements)})"
            )
        out = _run([sys.executable, "-m", "infra.probe", *self.spec.handlers], step, cwd=root, env=env)
        return set(json.loads(out.strip().splitlines()[-1]))

    @staticmethod
    def _fresh(path: Path) -> Path:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def trim_cache(cache: Path, keep: int = CACHE_KEEP) -> None:
    """Delete all but the `keep` most recently built assets and dependency sets."""
    for pattern in ("asset-*", "deps-*"):
        built = sorted(
            (p for p in cache.glob(pattern) if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in built[keep:]:
            shutil.rmtree(old, ignore_errors=True)
            old.with_suffix(".json").unlink(missing_ok=True)


def prune_distributions(
    site: Path, imported: set[str], keep: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """Remove every installed distribution none of whose top-level modules was imported, except the
    distributions named in `keep` (a server's requirements and what they need), which stay whole."""
    kept, pruned = [], []
    protected = {_normalise(name) for name in keep}
    for dist_info in sorted(site.glob("*.dist-info")):
        files = _record(dist_info)
        name = dist_info.name.removesuffix(".dist-info")
        if (
            _normalise(name.rpartition("-")[0] or name) in protected
            or {_top_level(f) for f in files} & imported
        ):
            kept.append(name)
            continue
        pruned.append(name)
        for file in files:
            path = (site / file).resolve()
            if path.is_relative_to(site.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
    _remove_empty_folders(site)
    return kept, pruned


def static_imports(sources: Iterable[Path]) -> set[str]:
    """Top-level modules named by an `import` statement anywhere in `sources` (files, or folders of
    `.py` files) — in function bodies too, where a probe run cannot see them."""
    names: set[str] = set()
    for source in sources:
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            if "__pycache__" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except SyntaxError as exc:
                raise BundlingError(f"{path} does not parse: {exc}") from None
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name.partition(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.partition(".")[0])
    return names


def distributions_providing(site: Path, modules: set[str]) -> list[str]:
    """The names of the distributions installed in `site` that provide any of the top-level `modules`."""
    return sorted(
        dist_info.name.removesuffix(".dist-info").rpartition("-")[0]
        for dist_info in site.glob("*.dist-info")
        if {_top_level(f) for f in _record(dist_info)} & modules
    )


def marker_environment(platform: str, python_version: str) -> dict[str, str]:
    """PEP 508 marker values of the Lambda runtime a bundle is built for (`platform` is a wheel tag
    such as `manylinux2014_aarch64`)."""
    machine = platform.partition("_")[2] or "x86_64"
    full_version = f"{python_version}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full_version,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full_version,
        "python_version": python_version,
        "sys_platform": "linux",
    }


def requirement_closure(site: Path, requirements: Iterable[str], environment: dict[str, str]) -> set[str]:
    """The normalised names of the distributions installed in `site` that `requirements` need,
    directly or through their dependencies (with extras, and markers evaluated for `environment`)."""
    from packaging.requirements import InvalidRequirement, Requirement

    installed: dict[str, metadata.Distribution] = {}
    for dist_info in site.glob("*.dist-info"):
        found = metadata.PathDistribution(dist_info)
        if found.metadata["Name"]:
            installed[_normalise(found.metadata["Name"])] = found

    def applies(requirement: Requirement, extras: set[str]) -> bool:
        marker = requirement.marker
        return marker is None or any(marker.evaluate({**environment, "extra": e}) for e in {"", *extras})

    def parse(text: str) -> Requirement:
        try:
            return Requirement(text)
        except InvalidRequirement as exc:
            raise BundlingError(f"{text!r} is not a pip requirement string: {exc}") from None

    pending = [(_normalise(r.name), set(r.extras)) for r in map(parse, requirements) if applies(r, set())]
    needed: dict[str, set[str]] = {}
    while pending:
        name, extras = pending.pop()
        if name in needed and extras <= needed[name]:
            continue
        needed[name] = needed.get(name, set()) | extras
        distribution = installed.get(name)
        for text in (distribution.requires or []) if distribution else []:
            dependency = parse(text)
            if applies(dependency, needed[name]):
                pending.append((_normalise(dependency.name), set(dependency.extras)))
    return set(needed) & set(installed)


def _remove_empty_folders(root: Path) -> None:
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(folder.iterdir()):
            folder.rmdir()


def prune_service_models(site: Path, services: Iterable[str] = BOTOCORE_SERVICES) -> None:
    """Keep only the AWS service models a worker uses (botocore's and boto3's data folders)."""
    wanted = set(services)
    for data in (site / "botocore" / "data", site / "boto3" / "data"):
        if data.is_dir():
            for entry in data.iterdir():
                if entry.is_dir() and entry.name not in wanted:
                    shutil.rmtree(entry)


def _handler_sources(repo_root: Path, handlers: Iterable[str]) -> list[Path]:
    """`functions/` and the top-level package (or module) of every handler found in the repository;
    a handler that comes from an installed distribution (a server's requirement) has none."""
    tops = dict.fromkeys(["functions", *(h.split(".")[0] for h in handlers)])
    found = []
    for top in tops:
        if top == "dmcp_aws":
            continue
        for candidate in (repo_root / top, repo_root / f"{top}.py"):
            if candidate.exists():
                found.append(candidate)
                break
    return found


def _copy_sources(repo_root: Path, work: Path, handlers: Iterable[str] = ()) -> None:
    for source in _handler_sources(repo_root, handlers):
        if source.is_dir():
            shutil.copytree(source, work / source.name, ignore=_IGNORED)
        else:
            shutil.copy2(source, work / source.name)
    package = work / "dmcp_aws"
    shutil.copytree(repo_root / "transport" / "dmcp_aws", package, ignore=_IGNORED)
    for excluded in EXCLUDED_SOURCES:
        target = package / excluded
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def _precompile(work: Path, python_version: str) -> str | None:
    """Compile bytecode with the Lambda's Python version when one is installed (faster cold start).

    The task root is read-only in Lambda, so modules not compiled here are compiled at every cold start.
    """
    python = _find_python(python_version)
    if python is None:
        return None
    command = [
        python,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(work),
    ]
    _run(command, f"compiling bytecode with {python}", timeout=600)
    return python


def _find_python(version: str) -> str | None:
    candidates = [os.environ.get("DMCP_BUNDLE_PYTHON"), f"python{version}"]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for candidate in filter(None, candidates):
        try:
            found = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found.returncode == 0 and found.stdout.strip() == str(tuple(int(p) for p in version.split("."))):
            return candidate
    return None


def _source_digests(repo_root: Path, handlers: Iterable[str] = ()) -> Iterator[str]:
    for folder in [*_handler_sources(repo_root, handlers), repo_root / "transport" / "dmcp_aws"]:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
                yield f"{path.relative_to(repo_root)}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    yield hashlib.sha256((Path(__file__).parent / "probe.py").read_bytes()).hexdigest()
    yield hashlib.sha256(json.dumps(_PROBE_ENV, sort_keys=True).encode()).hexdigest()  # what the probe sees


def _record(dist_info: Path) -> list[str]:
    record = dist_info / "RECORD"
    if not record.exists():
        return []
    return [line.split(",")[0] for line in record.read_text().splitlines() if line]


def _top_level(file: str) -> str:
    first = file.split("/")[0]
    if first.endswith(".dist-info") or first in ("..", "bin"):
        return ""
    return re.sub(r"(\.cpython-[^.]+)?\.(py|so|pth|pyi)$", "", first)


def _publish(work: Path, target: Path) -> None:
    """Move a finished build into place (a concurrent build of the same key may have won)."""
    try:
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    except OSError:
        if not (target / ".complete").exists():
            raise
        shutil.rmtree(work, ignore_errors=True)


def _run(command: list[str], step: str, *, timeout: int = 300, **kwargs: Any) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except subprocess.TimeoutExpired:
        raise BundlingError(f"{step} took longer than {timeout} s") from None
    if done.returncode != 0:
        raise BundlingError(f"{step} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return str(done.stdout)


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]


def _extras(requirement: str) -> str:
    """The `[extra,...]` part of a requirement, or ''."""
    match = re.match(r"\s*[A-Za-z0-9_.-]+\s*(\[[^\]]*\])", requirement)
    return match.group(1).replace(" ", "") if match else ""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def lambda_code(bundle: LambdaBundle) -> Any:
    """The workers' `aws_lambda.Code`: CDK local bundling that copies the cached asset.

    When CDK skips bundling (a stack not selected for `cdk deploy`, or tests that set the
    `aws:cdk:bundling-stacks` context to `[]`), the small `functions/` folder stands in.
    """
    from aws_cdk import AssetHashType, BundlingOptions, DockerImage
    from aws_cdk import aws_lambda as lambda_

    return lambda_.Code.from_asset(
        str(bundle.spec.repo_root / "functions"),
        asset_hash=bundle.key,
        asset_hash_type=AssetHashType.CUSTOM,
        exclude=["__pycache__", "*.pyc"],
        bundling=BundlingOptions(
            image=DockerImage.from_registry(
                "dmcp-local-bundling-only"
            ),  # never pulled: local bundling succeeds or raises
            local=_local_bundling(bundle),
        ),
    )


def _local_bundling(bundle: LambdaBundle) -> Any:
    import jsii
    from aws_cdk import ILocalBundling

    @jsii.implements(ILocalBundling)
    class CachedLocalBundling:
        """CDK's local bundling hook: build (or reuse) the cached asset and copy it to `output_dir`."""

        def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
            source = bundle.build()
            shutil.copytree(
                source, output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete")
            )
            return True

    return CachedLocalBundling()
