"""The CSV loss log of a run: one row per optimizer step (step, lr, loss, grad_norm, then every loss term).

Rows are appended and flushed one at a time. On resume the log is rewritten (atomically) to the rows up to the
checkpoint's step, which also drops a half-written last line left by a kill, so the log always matches the
weights it accompanies. When a later step reports a term the header lacks, the file is rewritten with the
wider header and earlier rows leave that column empty.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from sparrow.storage import atomic_write_text

FIXED_COLUMNS = ("step", "lr", "loss", "grad_norm")


def read_loss_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a loss log as floats (``step`` as int); incomplete or unparsable lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    for raw in reader:
        try:
            row = {k: (float(v) if v not in ("", None) else math.nan) for k, v in raw.items() if k is not None}
            row["step"] = int(row["step"])
        except (TypeError, ValueError, KeyError):
            continue
        rows.append(row)
    return rows


def _format(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


class LossLog:
    """Append-only writer for one run's ``loss_log.csv`` (used by the main process only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.columns: list[str] = []
        if self.path.is_file():
            rows = read_loss_log(self.path)
            self.columns = self._columns_of(rows)

    @staticmethod
    def _columns_of(rows: list[dict[str, float]]) -> list[str]:
        terms: list[str] = []
        for row in rows:
            terms += [k for k in row if k not in FIXED_COLUMNS and k not in terms]
        return list(FIXED_COLUMNS) + terms if rows else []

    def _rewrite(self, rows: list[dict[str, float]], columns: list[str]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([str(row["step"]) if c == "step" else _format(row.get(c, math.nan)) for c in columns])
        atomic_write_text(self.path, buf.getvalue())
        self.columns = columns

    def truncate_after(self, step: int) -> None:
        """Keep only rows with ``step <= step`` (the state a checkpoint at ``step`` corresponds to)."""
        rows = [r for r in read_loss_log(self.path) if r["step"] <= step]
        if rows:
            self._rewrite(rows, self._columns_of(rows))
        elif self.path.exists():
            self.path.unlink()
            self.columns = []

    def append(self, step: int, lr: float, loss: float, grad_norm: float, terms: dict[str, float]) -> None:
        row = {"step": step, "lr": lr, "loss": loss, "grad_norm": grad_norm, **terms}
        wanted = list(FIXED_COLUMNS) + sorted(terms)
        if not self.columns or any(c not in self.columns for c in wanted):
            old = read_loss_log(self.path)
            columns = self.columns or list(FIXED_COLUMNS)
            columns = columns + [c for c in wanted if c not in columns]
            self._rewrite(old + [row], columns)
            return
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(
            [str(step) if c == "step" else _format(row.get(c, math.nan)) for c in self.columns]
        )
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line.getvalue())
            handle.flush()
