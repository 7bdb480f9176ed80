"""The docs cannot drift: every command, snippet, link and file they name is checked here.

- Every shell command in a fenced `sh` block, and every inline `code` span that is a command
  (`make …`, `dmcp …`, `npx cdk …`, `python -m …`, `pip install …`, `aws …`), is parsed and
  checked against the repository: `make` targets in the Makefile, `dmcp` verbs and their options
  in the real command (plus the verbs being added), the server and the tool a `dmcp call` names,
  the deployment description a `-c dmcp:deployment=…` or `-d` names (it must load, and a
  `cdklocal` deploy must switch the DynamoDB ledger off), modules, files, extras, AWS CLI
  operations and their options (from botocore's service models).
- Python snippets compile, and what they import from `dmcp_aws`, `dmcp_localstack` and `mcp` exists.
- JSON snippets parse, and deployment descriptions in them validate.
- Relative links and their `#anchors` resolve; paths in `code` under the repository's folders
  exist; no document names a Markdown file the repository does not have.
- The README's client example is `examples/client.py`, word for word.

A command with no checker fails: add one here rather than leaving a command unchecked.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmcp_aws.deployment import _REQUIREMENT, Deployment, ServerSpec, topology
from dmcp_aws.naming import LAST_WORD_DELIVERIES

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "localstack" / "README.md"])

ANNOUNCED_VERBS = frozenset(
    {
        "demo",
        "dev",
        "worker",
        "sweep",
        "call",
        "tools",
        "resources",
        "read",
        "prompts",
        "prompt",
        "ping",
        "dlq",
    }
)
"""`dmcp` verbs the command has or is getting (issue 8); registered ones are checked in depth."""
PLANNED_VERBS = frozenset({"stdio", "gateway"})
"""Bridges of the design, named in docs/architecture.md's "What is not built yet"."""
GENERATED = frozenset({".dmcp/dev.env", ".venv/bin/activate"})
"""Files the docs tell you to use that `make` / `dmcp dev` write (not in a fresh clone)."""
NPX_EXAMPLES = frozenset({"@modelcontextprotocol/server-everything"})
"""npm packages named as examples of stdio MCP servers (the coming bridge), not run by the kit."""
CDK_COMMANDS = frozenset({"synth", "diff", "deploy", "destroy", "bootstrap", "list", "ls", "watch", "..."})
AWS_GLOBAL_OPTIONS = frozenset({"--endpoint-url", "--region", "--profile", "--output", "--query"})
SHELL_BUILTINS = frozenset({"cd", "export", "time"})
PLACEHOLDER = "PLACEHOLDER"


# --- reading the documents ---------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    doc: Path
    line: int
    language: str
    text: str

    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def fenced_blocks(doc: Path) -> Iterator[Snippet]:
    text = doc.read_text()
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        yield Snippet(doc, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))


def prose(doc: Path) -> str:
    """The document without its fenced blocks (line numbers kept)."""
    return re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), doc.read_text(), flags=re.S | re.M)


def code_spans(doc: Path) -> Iterator[Snippet]:
    text = prose(doc)
    for match in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", text):
        yield Snippet(doc, text.count("\n", 0, match.start()) + 1, "span", match.group(1))


def blocks(language: str) -> list[Snippet]:
    return [b for doc in DOCS for b in fenced_blocks(doc) if b.language == language]


def shell_lines(block: Snippet) -> Iterator[tuple[int, str]]:
    joined = block.text.replace("\\\n", " ")
    for offset, line in enumerate(joined.splitlines()):
        if line.strip() and not line.lstrip().startswith("#"):
            yield offset, line


# --- splitting a command line ------------------------------------------------------------


def commands_in(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at `&&`, `||`, `;`, `|`), `$(…)` ones included."""
    line = re.sub(r"<[^<>\n]+>", PLACEHOLDER, line)  # <name>, <dlq arn>
    line = re.sub(r"\[(--?[^\]]*)\]", r"\1", line)  # [--stack NAME]: optional options
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    found: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            found.append([])
            continue
        found[-1].append(token)
        for inner in re.findall(r"\$\(([^()]*)\)", token):
            found.extend(commands_in(inner))
    return [c for c in found if c]


def is_placeholder(token: str) -> bool:
    return (
        PLACEHOLDER in token
        or "…" in token
        or token == "..."
        or token.startswith("$")
        or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(/[A-Z][A-Z0-9_]*)*", token))
    )


def without_prefixes(command: list[str]) -> list[str]:
    """Drop `VAR=value` assignments and `time` in front of the program."""
    rest = list(command)
    while rest and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", rest[0]) or rest[0] == "time"):
        rest.pop(0)
    return rest


# --- what the repository offers ----------------------------------------------------------


@functools.cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))


@functools.cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@functools.cache
def package_json() -> dict[str, Any]:
    return dict(json.loads((ROOT / "package.json").read_text()))


@functools.cache
def dmcp_command() -> Any:
    from typer.main import get_command

    from dmcp_aws.cli import app

    return get_command(app)


@functools.cache
def example_tools() -> frozenset[str]:
    import anyio
    from functions.example.server import mcp

    return frozenset(t.name for t in anyio.run(mcp.list_tools))


@functools.cache
def module_help(module: str) -> str:
    """`python -m module --help`, with the folders pytest's `pythonpath` adds (localstack/) on the path."""
    folders = [str(ROOT / f) for f in pyproject()["tool"]["pytest"]["ini_options"].get("pythonpath", [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*folders, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


@functools.cache
def gitignored() -> frozenset[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return frozenset(line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#"))


@functools.cache
def markdown_files() -> frozenset[str]:
    """Names of the repository's Markdown files (what is installed or built is not the repository)."""
    skip = {
        ".git",
        ".venv",
        "node_modules",
        ".build",
        "cdk.out",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
    names = set()
    for _folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in skip]
        names.update(f for f in files if f.endswith(".md"))
    return frozenset(names)


def load_description(name: str) -> Deployment:
    path = ROOT / name
    assert path.is_file(), f"deployment description {name} does not exist"
    return Deployment.load(path)


# --- the checkers, one per program -------------------------------------------------------


def check_make(args: list[str]) -> None:
    for target in (a for a in args if not a.startswith("-") and "=" not in a):
        assert target in make_targets(), f"make {target}: no such target in the Makefile"


def _options(command: Any) -> dict[str, Any]:
    options = {"--help": None, "-h": None}
    for param in command.params:
        for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if name.startswith("-"):
                options[name] = param
    return options


def check_dmcp(args: list[str]) -> None:
    group = dmcp_command()
    group_options = _options(group)
    while args and args[0].startswith("-"):
        assert args[0] in group_options or args[0] == "--version", f"dmcp {args[0]}: no such option"
        args = args[1:]
    if not args:
        return
    verb, rest = args[0], args[1:]
    if is_placeholder(verb):
        return
    if verb not in group.commands:
        assert verb in ANNOUNCED_VERBS | PLANNED_VERBS, f"dmcp {verb}: no such command"
        return
    command = group.commands[verb]
    if hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        assert rest[0] in command.commands, f"dmcp {verb} {rest[0]}: no such subcommand"
        command, rest = command.commands[rest[0]], rest[1:]
    options, values, positionals = _options(command), {}, []
    while rest:
        token = rest.pop(0)
        if token.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", token):
            name, _, inline = token.partition("=")
            assert name in options, f"dmcp {verb} {name}: no such option"
            param = options[name]
            takes_value = param is not None and not getattr(param, "is_flag", False) and not param.count
            if takes_value:
                value = inline or (rest.pop(0) if rest else "")
                values.update(dict.fromkeys([*param.opts, *param.secondary_opts], value))
        else:
            positionals.append(token)
    description = values.get("--deployment")
    spec = load_description(description) if description and not is_placeholder(description) else None
    spec = spec or Deployment.load(ROOT / "dmcp.json")
    server = values.get("--server", spec.servers[0].name)
    if not is_placeholder(server) and not values.get("--stack"):
        assert server in [s.name for s in spec.servers], (
            f"dmcp {verb} --server {server}: not in the description"
        )
    arguments = values.get("--json")
    if arguments is not None and not is_placeholder(arguments):
        assert isinstance(json.loads(arguments), dict), f"dmcp {verb} --json {arguments}: not a JSON object"
    if verb == "call" and positionals and not is_placeholder(positionals[0]) and server == "example":
        assert positionals[0] in example_tools(), (
            f"dmcp call {positionals[0]}: the example server has no such tool"
        )


def check_python(args: list[str]) -> None:
    args = [a for a in args if a not in ("-u", "-B", "-I")]
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "dmcp_aws":
            return check_dmcp(rest)
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        assert found is not None, f"python -m {module}: no such module"
        words = [a for a in rest if not a.startswith("-") and not is_placeholder(a)]
        if words:
            usage = module_help(module)
            assert re.search(r"\{[^}]*\b" + re.escape(words[0]) + r"\b", usage), (
                f"python -m {module} {words[0]}: not one of its commands"
            )
        return None
    if args:
        assert (ROOT / args[0]).is_file(), f"python {args[0]}: no such file"
    return None


def _extras(spec: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", spec)
    return [e.strip() for e in match.group(1).split(",")] if match else []


def check_pip(args: list[str]) -> None:
    if args[:1] != ["install"]:
        assert args[:1] in (["wheel"], ["show"]), f"pip {' '.join(args[:1])}: not checked"
        return
    rest = args[1:]
    project = pyproject()["project"]
    while rest:
        token = rest.pop(0)
        if token in ("-r", "-c", "--requirement", "--constraint"):
            assert (ROOT / rest.pop(0)).is_file(), f"pip install {token}: no such file"
        elif token in ("--platform", "--python-version", "--target", "--implementation", "-t"):
            rest.pop(0) if rest else None
        elif token.startswith("-") or is_placeholder(token):
            continue
        elif token.startswith(".") or token.split("[")[0] == project["name"]:
            for extra in _extras(token):
                assert extra in project["optional-dependencies"], f"pip install {token}: no extra {extra!r}"
        else:
            assert _REQUIREMENT.match(token), f"pip install {token}: not a requirement string"


def check_npm(args: list[str]) -> None:
    assert args[:1] in (["ci"], ["install"]), f"npm {' '.join(args)}: not checked"
    assert (ROOT / "package-lock.json").is_file()


def check_cdk(program: str, args: list[str]) -> None:
    package = {"cdk": "aws-cdk", "cdklocal": "aws-cdk-local"}[program]
    assert package in package_json()["devDependencies"], f"{program}: {package} is not pinned in package.json"
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return
    assert words[0] in CDK_COMMANDS, f"{program} {words[0]}: not a CDK CLI command"
    contexts = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-c", "--context")]
    description = "dmcp.json"
    for context in contexts:
        key, _, value = context.partition("=")
        assert key in ("dmcp:deployment", "dmcp:stack-name"), (
            f"{program} -c {key}: not a context the app reads"
        )
        if key == "dmcp:deployment" and not is_placeholder(value):
            load_description(value)
            description = value
    # A command line (not the bare name of a command in prose) deploying into LocalStack:
    if program == "cdklocal" and words[0] in ("deploy", "diff", "destroy", "synth") and len(args) > 1:
        assert not load_description(description).idempotency, (
            f"cdklocal {words[0]} with {description}: its DynamoDB ledger never starts in LocalStack "
            "(the deploy hangs); name a description with idempotency off: -c dmcp:deployment=…"
        )


INSPECTOR_OPTIONS = frozenset(
    {"--method", "--tool-name", "--tool-arg", "--uri", "--prompt-name", "--prompt-args", "--cwd", "-e"}
)
"""MCP Inspector CLI options the docs may use (each takes values)."""


def check_inspector(args: list[str]) -> None:
    """`… --cli [Inspector options] -- COMMAND`: the Inspector's options, then the command it runs."""
    assert args[:1] == ["--cli"], "MCP Inspector: the docs use its CLI mode (--cli first)"
    assert "--" in args, "MCP Inspector: put `--` before the command (the Inspector has its own --server)"
    split = args.index("--")
    for option in (a for a in args[1:split] if a.startswith("-")):
        assert option in INSPECTOR_OPTIONS, f"MCP Inspector {option}: not an option the docs' checks know"
    check_command(args[split + 1 :])


def check_node(args: list[str]) -> None:
    assert args[0] == "node_modules/.bin/mcp-inspector", f"node {args[0]}: not checked"
    assert "@modelcontextprotocol/inspector" in package_json()["devDependencies"]
    check_inspector(args[1:])


def check_npx(args: list[str]) -> None:
    args = [a for a in args if a not in ("--no-install", "--yes", "-y")]
    if args[0] in ("cdk", "cdklocal"):
        return check_cdk(args[0], args[1:])
    if args[0] == "@modelcontextprotocol/inspector":
        assert args[0] in package_json()["devDependencies"], "the MCP Inspector is not pinned in package.json"
        return check_inspector(args[1:])
    assert args[0] in NPX_EXAMPLES, f"npx {args[0]}: not checked"
    return None


@functools.cache
def aws_operations(service: str) -> dict[str, Any]:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return {
        re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower(): model.operation_model(name)
        for name in model.operation_names
    }


def check_aws(args: list[str]) -> None:
    rest = list(args)
    while rest and rest[0].startswith("--"):
        assert rest[0] in AWS_GLOBAL_OPTIONS, f"aws {rest[0]}: not a global option"
        rest = rest[2:]
    service, operation, rest = rest[0], rest[1], rest[2:]
    operations = aws_operations(service)
    assert operation in operations, f"aws {service} {operation}: no such operation"
    members = {re.sub(r"(?<!^)(?=[A-Z])", "-", m).lower() for m in operations[operation].input_shape.members}
    for option in (a for a in rest if a.startswith("--")):
        assert option in AWS_GLOBAL_OPTIONS or option[2:] in members, (
            f"aws {service} {operation} {option}: unknown"
        )
    names = [q.name for q in topology(load_description("dmcp.json")).queues]
    for queue in re.findall(r"/\d{12}/([\w-]+)\b", " ".join(rest)):
        assert queue in names, f"aws {service} {operation}: no queue {queue} in dmcp.json's topology"


def check_source(args: list[str]) -> None:
    assert args[0] in GENERATED or (ROOT / args[0]).is_file(), f"source {args[0]}: no such file"
    if args[0] == ".dmcp/dev.env":
        dev = dmcp_command().commands["dev"]
        defaults = [str(p.default) for p in dev.params if p.name == "env_file"]
        assert defaults == [".dmcp/dev.env"], f"dmcp dev writes {defaults}, not .dmcp/dev.env"


def check_rm(args: list[str]) -> None:
    for path in (a for a in args if not a.startswith("-")):
        assert path.rstrip("/") in gitignored(), f"rm {path}: not a generated (gitignored) path"


def check_git(args: list[str]) -> None:
    assert args[:1] == ["clone"], f"git {' '.join(args)}: not checked"


def check_docker(args: list[str]) -> None:
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-f"]
    assert args[:1] == ["compose"] and files, f"docker {' '.join(args)}: not checked"
    for file in files:
        assert (ROOT / file).is_file(), f"docker compose -f {file}: no such file"


CHECKERS = {
    "make": check_make,
    "dmcp": check_dmcp,
    "python": check_python,
    "python3": check_python,
    "pip": check_pip,
    "npm": check_npm,
    "npx": check_npx,
    "node_modules/.bin/node": check_node,
    "cdk": lambda args: check_cdk("cdk", args),
    "cdklocal": lambda args: check_cdk("cdklocal", args),
    "aws": check_aws,
    "source": check_source,
    ".": check_source,
    "eval": lambda args: None,  # its `$(…)` is checked as a command of its own
    "rm": check_rm,
    "git": check_git,
    "docker": check_docker,
}


def program_of(word: str) -> str:
    return word.removeprefix(".venv/bin/")


def check_command(command: list[str]) -> None:
    command = without_prefixes(command)
    if not command or command[0] in SHELL_BUILTINS:
        return
    program = program_of(command[0])
    assert program in CHECKERS, f"no checker for `{program}`: add one to tests/unit/test_docs.py"
    CHECKERS[program](command[1:])


# --- the tests ---------------------------------------------------------------------------


def shell_commands() -> list[tuple[str, str]]:
    found = []
    for block in blocks("sh") + blocks("bash") + blocks("shell"):
        for offset, line in shell_lines(block):
            found.append((f"{block.doc.relative_to(ROOT)}:{block.line + 1 + offset}", line))
    return found


def inline_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for span in code_spans(doc):
            words = without_prefixes(span.text.split())
            if len(words) >= 2 and program_of(words[0]) in CHECKERS:
                found.append((span.where(), span.text))
    return found


def test_the_docs_have_commands_to_check() -> None:
    assert len(shell_commands()) > 20 and len(inline_commands()) > 40


@pytest.mark.parametrize(("where", "line"), shell_commands() + inline_commands())
def test_every_command_in_the_docs_is_real(where: str, line: str) -> None:
    for command in commands_in(line):
        try:
            check_command(command)
        except AssertionError as exc:
            raise AssertionError(f"{where}: `{line.strip()}`: {exc}") from None


@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.where())
def test_python_snippets_compile_and_import_what_exists(block: Snippet) -> None:
    tree = compile(block.text, block.where(), "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in ("dmcp_aws", "dmcp_localstack", "mcp")
        ):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{block.where()}: {node.module} has no {alias.name}"


@pytest.mark.parametrize("block", blocks("json"), ids=lambda b: b.where())
def test_json_snippets_parse_and_descriptions_validate(block: Snippet) -> None:
    data = json.loads(block.text)
    hosted = data.get("mcpServers", data.get("servers"))
    if isinstance(hosted, dict):  # an MCP host's config (Claude Desktop, VS Code): its commands run
        for name, entry in hosted.items():
            command = re.sub(r"^(\$\{workspaceFolder\}|/path/to/clone)/", "", entry["command"])
            try:
                check_command([command, *entry.get("args", [])])
            except AssertionError as exc:
                raise AssertionError(f"{block.where()}: server {name}: {exc}") from None
    elif "servers" in data:
        Deployment.parse(data, source=block.where())
    elif "handler" in data:
        ServerSpec.model_validate(data)


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", prose(doc), re.M):
        anchor, n = github_anchor(heading), 1
        while anchor in found:
            anchor, n = f"{github_anchor(heading)}-{n}", n + 1
        found.add(anchor)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_links_and_named_files_exist(doc: Path) -> None:
    text = prose(doc)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{doc.name}: link to {target}: no such heading"
    top = {p.name for p in ROOT.iterdir()}
    for span in code_spans(doc):
        token = span.text
        if " " in token or "/" not in token or any(c in token for c in "<>*…{}$"):
            continue
        first = token.split("/")[0]
        if first in top and not token.startswith("."):
            assert (ROOT / token).exists(), f"{span.where()}: `{token}` does not exist"
        elif first in top:
            assert token in GENERATED or first in gitignored(), f"{span.where()}: `{token}` is not generated"
    for name in re.findall(r"\b([\w.-]+\.md)\b", text):
        assert name in markdown_files(), f"{doc.name} names {name}, which is not in the repository"


def test_the_readme_client_example_is_examples_client_py() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- client-example -->\n```python\n(.*?)```", readme, re.S)
    assert match, "README.md must keep its client example after <!-- client-example -->"
    assert match.group(1) == (ROOT / "examples" / "client.py").read_text()


def test_one_node_version_everywhere() -> None:
    """package.json's `engines` is the one Node.js requirement; the docs say the same."""
    wanted = package_json()["engines"]["node"]
    major = re.fullmatch(r">=\s*(\d+)(\.\d+)*", wanted)
    assert major, wanted
    for doc in DOCS:
        for version, at_least in re.findall(r"Node(?:\.js)? (\d+)\b(\+| or newer| or later)?", prose(doc)):
            if at_least:  # a requirement: the same as package.json's
                assert version == major.group(1), (
                    f"{doc.name}: Node {version}{at_least}; package.json: {wanted}"
                )
            else:  # a statement about one version (tested with, preferred by jsii)
                assert int(version) >= int(major.group(1)), (
                    f"{doc.name}: Node {version}; package.json: {wanted}"
                )


def test_license_matches_pyproject() -> None:
    assert pyproject()["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and package_json()["license"] == "Apache-2.0"


def test_the_redrive_count_the_docs_give_is_the_codes() -> None:
    for doc in DOCS:
        for extra in re.findall(r"max_receive_count`?\s*\+\s*(\d+)", prose(doc)):
            assert int(extra) == LAST_WORD_DELIVERIES, f"{doc.name}: max_receive_count + {extra}"
