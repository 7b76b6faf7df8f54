"""The Dockerfile and .dockerignore, read as Docker reads them (no Docker engine here): a builder
stage and a slim final stage holding only the venv, run unprivileged with ``dns-cert-checker`` as
its entrypoint, built from a context without tests, virtualenvs, git data or secrets."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("shared", "services", "lab", "demo", "tests", "bench")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "clang", "-dev ", "apt-get install", "pip install")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for kind, args in self.instructions if kind == instruction]


def stages() -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, args = line.partition(" ")
        kind = kind.upper()
        if kind == "FROM":
            parts = args.split()
            found.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        else:
            assert found, f"{kind} before the first FROM"
            found[-1].instructions.append((kind, " ".join(args.split())))
    return found


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str) -> bool:
    """Whether the context leaves ``path`` out (the patterns' plain and ``**/`` forms; no ``!``)."""
    patterns = ignore_patterns()
    assert not any(p.startswith("!") for p in patterns), "exceptions need a real matcher here"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (bare != pattern and fnmatch.fnmatch(Path(prefix).name, bare)):
                return True
    return False


def copied_sources(stage: Stage) -> list[str]:
    """What the stage COPYs from the build context (not from another stage)."""
    sources = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def test_the_image_is_built_in_two_stages_on_python_311_slim() -> None:
    found = stages()
    assert len(found) >= 2, "multi-stage: a builder, then the image"
    builder, final = found[0], found[-1]
    assert builder.name, "the builder stage is named, for COPY --from"
    assert final.base == "python:3.11-slim" and builder.base == final.base, "same interpreter path in both"


def test_the_final_stage_takes_only_the_venv_from_the_builder() -> None:
    builder, final = stages()[0], stages()[-1]
    copies = final.all("COPY")
    assert copies and all(f"--from={builder.name}" in c for c in copies), "nothing from the context itself"
    venvs = {c.split()[-1] for c in copies}
    assert len(venvs) == 1
    [venv] = venvs
    assert any(args.startswith(f"python -m venv {venv}") for args in builder.all("RUN"))
    env = " ".join(final.all("ENV"))
    assert f"PATH={venv}/bin:" in env, "the venv's dns-cert-checker (and python -m lab) come first on PATH"


def test_the_builder_installs_the_project_not_editable_and_drops_its_own_pip() -> None:
    builder = stages()[0]
    runs = " && ".join(builder.all("RUN"))
    assert re.search(r"/bin/pip install \.(\s|$)", runs), "a real install: the code goes into the venv"
    assert " -e " not in runs and "--editable" not in runs
    assert re.search(r"pip uninstall --yes pip setuptools", runs)
    assert "PIP_NO_CACHE_DIR=1" in " ".join(builder.all("ENV")), "no pip cache in the layer"


def test_the_final_stage_has_no_compiler_and_installs_nothing() -> None:
    final = stages()[-1]
    for args in final.all("RUN"):
        for tool in BUILD_TOOLS:
            assert tool not in f"{args} ", f"the final stage must not run {tool.strip()!r}: {args}"


def test_the_image_runs_as_an_unprivileged_user_it_creates() -> None:
    final = stages()[-1]
    [user] = final.all("USER")
    assert user not in ("0", "root") and not user.startswith("0:")
    runs = " ".join(final.all("RUN"))
    assert re.search(rf"useradd .*--uid {re.escape(user)}\b", runs), "the numeric user exists in /etc/passwd"
    # the places volumes are mounted on belong to that user, so named volumes inherit it
    assert re.search(rf"install -d -o {re.escape(user)} -g \d+ /var/lib/dcc /reports", runs)


def test_the_entrypoint_is_the_cli_in_exec_form() -> None:
    final = stages()[-1]
    [entrypoint] = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["dns-cert-checker"], "exec form: SIGTERM reaches Python directly"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "dns-cert-checker" in scripts


def test_the_build_context_leaves_out_tests_virtualenvs_git_secrets_and_caches() -> None:
    for path in (".git", ".venv", "tests", "tests/deploy/test_image.py", ".env", "docs", "demo-out"):
        assert ignored(path), f"{path} must stay out of the build context"
    for path in ("shared/__pycache__/config.cpython-311.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
        assert ignored(path), f"{path} must stay out of the build context"


def test_everything_the_dockerfile_copies_is_in_the_context() -> None:
    sources = [s for stage in stages() for s in copied_sources(stage)]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source), f"COPY {source}: .dockerignore leaves it out"


def test_the_copied_packages_import_nothing_the_image_leaves_out() -> None:
    copied = {Path(s).parts[0] for s in copied_sources(stages()[0])}
    assert {"shared", "services", "lab"} <= copied, "the services, and the lab the compose demo runs"
    left_out = set(PROJECT_PACKAGES) - copied
    for package in sorted(copied & set(PROJECT_PACKAGES)):
        for module in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(module.read_text(), str(module))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    assert top not in left_out, f"{module.relative_to(ROOT)} imports {name}, which is not in the image"
