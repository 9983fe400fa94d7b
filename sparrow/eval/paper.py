"""The paper's numbers as data: ``reproductions/paper/*.csv``, loaded, and the abstract's claims recomputed.

- ``main_table.csv``: the official results table (RISys-Lab/SPARROW README; docs/design.md §11.1), one row per
  host and variant (``baseline`` = the host alone, ``sparrow`` = host + SPARROW), one column per benchmark of
  :mod:`sparrow.eval.benchmarks` (J&F or mIoU in percent), with a source note per row.
- ``ablation.csv``: the Ref-DAVIS17 ablation with VideoGLaMM (docs/design.md §4.5): baseline 69.5 → TSF in
  training 72.4 → + ``[BOX]`` 76.8 → + TSF at test 77.7, with the switches of each step.
- ``claims.csv``: the abstract's claims ("consistent gains across six benchmarks, improving up to +8.9 J&F on
  RVOS, +5 mIoU on visual grounding, and +5.4 CLAIR on GCG"; arXiv 2603.12382) and two consistency checks between
  the table and the ablation, each with how it is recomputed from the table, the recomputed value and whether
  the table supports it. :func:`check_claims` recomputes them; the tests keep the CSV equal to it.

Gains are ``(host + SPARROW) − host`` per host and column, rounded to two decimals (the table's precision). A
claim "up to +X" is supported when the largest gain it covers rounds to X at the claim's own precision (half a
unit of its last digit: ±0.05 for 8.9, ±0.5 for 5).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sparrow.eval.benchmarks import BENCHMARKS, COLUMNS, RVOS_COLUMNS
from sparrow.paths import repo_root
from sparrow.storage import DataError

TABLE_HOSTS: tuple[str, ...] = ("unipixel", "glus", "videoglamm")  # the table's row order
VARIANTS: tuple[str, ...] = ("baseline", "sparrow")
SUPPORT = ("yes", "no", "not checkable")
TITLES = {b.key: b.title for b in BENCHMARKS}
ABSTRACT_SOURCE = "arXiv 2603.12382 abstract (also https://risys-lab.github.io/SPARROW)"
# The Ref-DAVIS17 protocol behind each host's published numbers (docs/evaluation.md §6.3): SPARROW's metric script
# scores the DAVIS unsupervised protocol; GLUS and UniPixel score every expression on its own with their vendored
# MeViS code. The + SPARROW rows of GLUS and UniPixel are taken to follow their host's (the paper does not say).
REF_DAVIS17_PROTOCOL: dict[str, str] = {"videoglamm": "davis", "unipixel": "expression", "glus": "expression"}


def paper_dir() -> Path:
    root = repo_root()
    if root is None:
        raise FileNotFoundError("reproductions/paper lives in the kit's checkout; run from a clone of the repository")
    return root / "reproductions" / "paper"


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    for i, row in enumerate(rows, start=2):
        empty = [c for c in required if c != "note" and not (row.get(c) or "").strip()]
        if empty and "source" in empty:
            raise DataError(f"{path}:{i}: every row needs a source note")
    return rows


def _float(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise DataError(f"{path}:{line}: column {column} is not a number ({text!r})") from exc


def _bool(path: Path, line: int, column: str, text: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise DataError(f"{path}:{line}: column {column} must be true or false, got {text!r}")
    return text.strip().lower() == "true"


@dataclass(frozen=True)
class PaperRow:
    method: str
    host: str
    variant: str
    values: dict[str, float]  # benchmark key -> percent
    source: str
    note: str = ""


@dataclass(frozen=True)
class AblationStep:
    step: str  # baseline, tsf, box, tsf_test
    setting: str
    tsf_train: bool
    box: bool
    tsf_test: bool
    ref_davis17: float
    source: str
    note: str = ""


@dataclass(frozen=True)
class Claim:
    claim: str
    text: str
    value: str  # as written in the paper (its decimals set the precision)
    metric: str
    how: str
    table_value: str
    supported: str
    finding: str
    source: str


@dataclass(frozen=True)
class ClaimCheck:
    claim: str
    table_value: str  # what the table gives, formatted; "" when the table cannot give it
    supported: str  # yes / no / not checkable
    finding: str


def main_table(path: str | Path | None = None) -> list[PaperRow]:
    path = Path(path) if path is not None else paper_dir() / "main_table.csv"
    rows = []
    for line, row in enumerate(_read_csv(path, ("method", "host", "variant", *COLUMNS, "source", "note")), start=2):
        if row["host"] not in TABLE_HOSTS or row["variant"] not in VARIANTS:
            raise DataError(f"{path}:{line}: unknown host/variant {row['host']!r}/{row['variant']!r}")
        values = {c: _float(path, line, c, row[c]) for c in COLUMNS}
        rows.append(PaperRow(row["method"], row["host"], row["variant"], values, row["source"], row["note"] or ""))
    seen = [(r.host, r.variant) for r in rows]
    if sorted(seen) != sorted((h, v) for h in TABLE_HOSTS for v in VARIANTS):
        raise DataError(f"{path}: expected one row per host and variant, got {seen}")
    return rows


def paper_value(host: str, variant: str, column: str, table: list[PaperRow] | None = None) -> float:
    for row in table if table is not None else main_table():
        if row.host == host and row.variant == variant:
            return row.values[column]
    raise KeyError(f"no paper row for {host}/{variant}")


def gains(table: list[PaperRow] | None = None) -> dict[tuple[str, str], float]:
    """``{(host, column): (host + SPARROW) − host}`` rounded to two decimals."""
    table = table if table is not None else main_table()
    return {
        (h, c): round(paper_value(h, "sparrow", c, table) - paper_value(h, "baseline", c, table), 2)
        for h in TABLE_HOSTS
        for c in COLUMNS
    }


def ablation(path: str | Path | None = None) -> list[AblationStep]:
    path = Path(path) if path is not None else paper_dir() / "ablation.csv"
    cols = ("step", "setting", "tsf_train", "box", "tsf_test", "ref_davis17", "source", "note")
    steps = []
    for line, row in enumerate(_read_csv(path, cols), start=2):
        steps.append(
            AblationStep(
                row["step"],
                row["setting"],
                _bool(path, line, "tsf_train", row["tsf_train"]),
                _bool(path, line, "box", row["box"]),
                _bool(path, line, "tsf_test", row["tsf_test"]),
                _float(path, line, "ref_davis17", row["ref_davis17"]),
                row["source"],
                row["note"] or "",
            )
        )
    return steps


def claims(path: str | Path | None = None) -> list[Claim]:
    path = Path(path) if path is not None else paper_dir() / "claims.csv"
    cols = ("claim", "text", "value", "metric", "how", "table_value", "supported", "finding", "source")
    out = []
    for line, row in enumerate(_read_csv(path, cols), start=2):
        if row["supported"] not in SUPPORT:
            raise DataError(f"{path}:{line}: supported must be one of {SUPPORT}, got {row['supported']!r}")
        out.append(Claim(**{c: row[c] for c in cols}))
    return out


def _half_unit(literal: str) -> float:
    decimals = len(literal.split(".", 1)[1]) if "." in literal else 0
    return 0.5 * 10**-decimals


def _up_to(claim: Claim, candidates: dict[tuple[str, str], float]) -> ClaimCheck:
    (host, column), best = max(candidates.items(), key=lambda kv: kv[1])
    target = float(claim.value)
    ok = abs(best - target) <= _half_unit(claim.value) + 1e-9
    finding = (
        f"largest gain {best:+.2f} ({host}, {TITLES[column]}); the claim +{claim.value} "
        f"{'rounds from' if ok else 'does not round from'} it"
    )
    values = sorted(candidates.values())
    if len(values) > 1:
        finding += f"; min {values[0]:+.2f}, mean {sum(values) / len(values):+.2f} over {len(values)}"
    return ClaimCheck(claim.claim, f"{best:.2f}", "yes" if ok else "no", finding)


def check_claims(
    table: list[PaperRow] | None = None, steps: list[AblationStep] | None = None, claim_rows: list[Claim] | None = None
) -> dict[str, ClaimCheck]:
    """Recompute every claim of ``claims.csv`` from the main table and the ablation."""
    table = table if table is not None else main_table()
    steps = steps if steps is not None else ablation()
    g = gains(table)
    by_step = {s.step: s for s in steps}
    out: dict[str, ClaimCheck] = {}
    for claim in claim_rows if claim_rows is not None else claims():
        if claim.claim == "consistent_gains":
            positive = sum(v > 0 for v in g.values())
            worst = min(g.items(), key=lambda kv: kv[1])
            out[claim.claim] = ClaimCheck(
                claim.claim,
                f"{positive}/{len(g)}",
                "yes" if positive == len(g) else "no",
                f"{positive} of {len(g)} host x column gains are positive; smallest "
                f"{worst[1]:+.2f} ({worst[0][0]}, {TITLES[worst[0][1]]})",
            )
        elif claim.claim == "rvos_jf":
            out[claim.claim] = _up_to(claim, {k: v for k, v in g.items() if k[1] in RVOS_COLUMNS})
        elif claim.claim == "grounding_miou":
            out[claim.claim] = _up_to(claim, {k: v for k, v in g.items() if k[1] == "vidstg"})
        elif claim.claim == "gcg_clair":
            gcg = ", ".join(f"{h} {g[(h, 'videogcg')]:+.2f}" for h in TABLE_HOSTS)
            out[claim.claim] = ClaimCheck(
                claim.claim,
                "",
                "not checkable",
                f"the table has no CLAIR column; its VideoGCG column is mIoU (gains {gcg})",
            )
        elif claim.claim in ("ablation_baseline", "ablation_box"):
            step, variant = ("baseline", "baseline") if claim.claim == "ablation_baseline" else ("box", "sparrow")
            ablated = by_step[step].ref_davis17
            tabled = paper_value("videoglamm", variant, "ref_davis17", table)
            out[claim.claim] = ClaimCheck(
                claim.claim,
                f"{ablated:.1f} vs {tabled:.1f}",
                "yes" if ablated == tabled else "no",
                f"ablation step {step!r} {ablated:.1f}, main table VideoGLaMM "
                f"{'+ SPARROW ' if variant == 'sparrow' else ''}Ref-DAVIS17 {tabled:.1f}",
            )
        else:
            raise DataError(f"claims.csv: no rule to check claim {claim.claim!r}")
    return out
