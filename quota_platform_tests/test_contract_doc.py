"""docs/contract.md names, beside each rule, the one function that carries it out: every name it
cites must exist at the path it gives, so the page cannot drift from the code unnoticed."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"`(quota_platform/[\w/]+\.py) ([\w.]+)`")


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_every_function_the_contract_names_exists():
    text = (ROOT / "docs" / "contract.md").read_text()
    citations = CITATION.findall(text)
    assert len(citations) >= 25, "the contract page should name the function of every rule"
    missing = [
        f"{path} {name}"
        for path, name in citations
        if not (ROOT / path).exists() or name.split(".")[-1] not in defined_names(ROOT / path)
    ]
    assert missing == []
