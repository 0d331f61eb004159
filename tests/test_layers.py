"""The house rules: which package may import which (README "Layout"), and a torch-free spine.

Every ``import nertools.X`` / ``from nertools.X import`` in the package, lazy imports inside
functions included, is read from the source and checked against :data:`ALLOWED`. A new
edge between packages is a design decision: add it here, with the README line, on purpose.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "nertools"

# package -> packages it may import (besides itself). "errors" is nertools/errors.py.
ALLOWED = {
    "errors": set(),
    "core": {"errors"},
    "formats": {"core", "errors"},
    "evaluation": {"core", "errors"},
    "runtime": {"core", "errors"},
    "llm": {"core", "errors", "runtime"},
    "training": {"core", "errors", "runtime", "evaluation"},
    # GeNER builds its phrase index over X-NER's candidate n-gram rules (xner.candidates).
    "xner": {"core", "errors", "runtime", "evaluation"},
    "gener": {"core", "errors", "runtime", "llm", "xner"},
    "tagging": {"core", "errors", "runtime", "training", "evaluation"},
    "annotate": {"core", "errors", "runtime", "llm", "xner"},
    "biencoder": {"core", "errors", "runtime", "training", "evaluation", "tagging"},
    "fewshot": {"core", "errors", "runtime", "training", "evaluation", "tagging"},
    "align": {"core", "errors", "runtime", "llm", "training", "evaluation", "tagging"},
    "cli": None,  # the command layer may import anything
}
# nertools/<name>.py files that are deprecated aliases of moved modules (not part of the house)
SHIMS = {"record", "jsonl", "tags", "format_doc", "models", "divergence", "causal_divergence", "spans",
         "seeds", "pseudo", "normalize", "dictionary", "dictmatch", "tagger", "bond", "train", "retrieve",
         "convert", "evaluate"}


def package_of(path: Path) -> str | None:
    rel = path.relative_to(PKG)
    if len(rel.parts) == 1:
        stem = rel.stem
        return None if stem in SHIMS or stem == "__init__" else stem
    return rel.parts[0]


def nertools_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mod = node.module
            if mod == "nertools":
                for alias in node.names:
                    yield node.lineno, f"nertools.{alias.name}"
            elif mod.startswith("nertools."):
                yield node.lineno, mod
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nertools."):
                    yield node.lineno, alias.name


def target_package(module: str) -> str:
    return module.split(".")[1]


def test_every_package_is_declared():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - set(ALLOWED) == set(), "new package: declare what it may import in ALLOWED"


def test_imports_follow_the_layers():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        pkg = package_of(path)
        if pkg is None or ALLOWED.get(pkg) is None:
            continue
        for line, mod in nertools_imports(path):
            tgt = target_package(mod)
            if tgt == pkg:
                continue
            if tgt in SHIMS:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports the deprecated path {mod}")
            elif tgt not in ALLOWED[pkg]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {pkg} may not import {mod}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from nertools.tagging.tagger import Tagger\n")
    assert [m for _, m in nertools_imports(bad)] == ["nertools.tagging.tagger"]
    assert "tagging" not in ALLOWED["core"]


@pytest.mark.parametrize("module", ["nertools", "nertools.core.record", "nertools.core.jsonl",
                                    "nertools.core.tags", "nertools.core.labels", "nertools.core.specfile",
                                    "nertools.core.atomic", "nertools.formats", "nertools.evaluation",
                                    "nertools.cli.common", "nertools.cli.options"])
def test_spine_imports_no_torch(module):
    code = (f"import sys, {module}\n"
            "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"
