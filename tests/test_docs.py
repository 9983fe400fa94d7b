"""The kit's documentation holds together: every section citation resolves, and nothing points outside the repository.

Code, notebooks, data files and docs cite sections as ``docs/<name>.md §N`` (optionally ``§N.M``, lists such as
``§3, §8`` or ``§4.5 and §11.1``, and ranges such as ``§1-§4``). Each cited file must exist and hold a heading with
that number; a bare ``§N`` inside a docs file must name a heading of the same file.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache, lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

SECTION = r"§\s?(\d+(?:\.\d+)?)"
# A docs file named, optionally in code quotes, then a chain of sections: "§3, §8", "§4.5 and §11.1", "§1-§4",
# "§8.2-8.3" (a range end may omit its §).
CITATION = re.compile(
    r"docs/(?P<name>[a-z][a-z0-9_-]*)\.md`{0,2}"
    r"(?P<chain>\s*" + SECTION + r"(?:\s*(?:,|and|-|–)\s*(?:§\s?)?\d+(?:\.\d+)?)*)?"
)
CHAIN_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
BARE_SECTION = re.compile(SECTION)

# Documents outside the repository that must never be named, and words about how the work was organised.
# Written as patterns so that this file does not contain the names it forbids.
FOREIGN = [
    re.compile(p)
    for p in (
        r"architecture\.md",
        r"environment\.md",
        r"datasets\.md",
        r"metrics\.md",
        r"DEVELOPERS\.md",
        r"shared[/\\]reference",
    )
]
PROCESS = re.compile(r"\bissue\s+\d", re.IGNORECASE)


@lru_cache(maxsize=1)
def repository_files() -> tuple[Path, ...]:
    """Tracked files plus untracked ones git does not ignore (a walk of the tree when git is unavailable)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        paths = [ROOT / p for p in out.split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "artifacts", "__pycache__", "node_modules"}
        paths = [p for p in ROOT.rglob("*") if not skip.intersection(p.relative_to(ROOT).parts)]
    return tuple(sorted(p for p in paths if p.is_file()))


@cache
def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


@cache
def headings(name: str) -> frozenset[str]:
    text = read_text(DOCS / f"{name}.md")
    return frozenset(HEADING.findall(text)) if text is not None else frozenset()


def citations() -> list[tuple[str, str, str | None]]:
    """(where, docs name, section or None) for every citation in the repository."""
    found = []
    for path in repository_files():
        text = read_text(path)
        if text is None:
            continue
        rel = path.relative_to(ROOT).as_posix()
        for match in CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{rel}:{line}"
            chain = match.group("chain")
            numbers = CHAIN_NUMBER.findall(chain) if chain else []
            if not numbers:
                found.append((where, match.group("name"), None))
            for number in numbers:
                found.append((where, match.group("name"), number))
    return found


def test_docs_exist() -> None:
    for name in ("README", "design", "data-formats", "evaluation", "runtime", "conventions"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"


def test_citations_are_found() -> None:
    cited = citations()
    assert len(cited) > 50, f"only {len(cited)} citations found: the pattern no longer matches the code's style"
    assert {"design", "data-formats", "evaluation", "runtime"} <= {name for _, name, _ in cited}


def test_every_citation_resolves() -> None:
    broken = []
    for where, name, number in citations():
        if not (DOCS / f"{name}.md").is_file():
            broken.append(f"{where}: docs/{name}.md does not exist")
        elif number is not None and number not in headings(name):
            broken.append(f"{where}: docs/{name}.md has no section {number}")
    assert not broken, "broken documentation citations:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_sections_within_a_doc_resolve(doc: str) -> None:
    text = CITATION.sub("", read_text(DOCS / doc) or "")
    own = headings(doc[:-3])
    missing = sorted(
        {n for n in BARE_SECTION.findall(text) if n not in own}, key=lambda n: [int(x) for x in n.split(".")]
    )
    assert not missing, f"docs/{doc} refers to sections it does not have: {missing}"


def test_nothing_names_documents_outside_the_repository() -> None:
    hits = []
    for path in repository_files():
        text = read_text(path)
        if text is None:
            continue
        rel = path.relative_to(ROOT).as_posix()
        for pattern in FOREIGN:
            for match in pattern.finditer(text):
                hits.append(f"{rel}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}")
        if not rel.startswith("docs/"):
            for match in PROCESS.finditer(text):
                hits.append(f"{rel}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}")
    assert not hits, "references outside the repository or to how the work was organised:\n" + "\n".join(hits)


def test_every_test_the_reliability_table_names_exists() -> None:
    """docs/reliability.md promises a test per fault case: each `file::test` it names must be a test in that file."""
    table = (ROOT / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", table)
    assert len(named) >= 40
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not re.search(rf"^\s*def {name}\(", (ROOT / "tests" / file).read_text(), flags=re.M)
    ]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
