"""Notebook 04's tables, verdicts and recorded numbers, made from :mod:`sparrow.experiments.tables`' measurements.

Per cell: mean ± sample standard deviation over seeds (no std with one seed). Gains are paired per seed (the
variants of a seed share the host stage): ``gain_s = sparrow_s − baseline_s`` (what the paper reports) and
``sparrow_s − control_s`` (the gain beyond the control's same extra training), then mean ± std of the gains and a
95% Student t interval over the paired differences (:func:`t_interval`; none with one seed).
A verdict says +SPARROW beats the baseline (or the control) when the mean gain is at least :data:`NEGLIGIBLE` (half
the tables' 0.1-point precision), that it does not when the gain is at most −NEGLIGIBLE, and that there is no
difference in between; it says how many seeds agree, whether the gain exceeds its seed-to-seed spread, and for the
control whether the 95% interval excludes zero. Under ``paper`` each number is compared with the published one
within :data:`PAPER_TOLERANCE`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import pandas as pd
from scipy import stats

from sparrow.eval.benchmarks import COLUMNS
from sparrow.eval.paper import REF_DAVIS17_PROTOCOL, TABLE_HOSTS, TITLES, ablation, main_table, paper_value
from sparrow.experiments.tables import (
    ABLATION_COLUMN,
    ABLATION_HOST,
    ABLATION_STEPS,
    CONTROL,
    HARD_CASE_BENCHMARK,
    MAIN_VARIANTS,
    Measurements,
)

HOST_NAMES = {"unipixel": "UniPixel", "glus": "GLUS", "videoglamm": "VideoGLaMM"}
# |measured - paper| allowed under `paper`: the protocols are reimplemented exactly (J and F equal the official code
# to 1e-12), so what remains is inference numerics (fp16 kernels, SAM2 ops, GPU nondeterminism) and, for VidSTG,
# the resize to 224 px; one point of J&F / mIoU covers that and nothing larger.
PAPER_TOLERANCE = 1.0
# A mean gain smaller than this is "no difference": half the 0.1-point precision the tables print.
NEGLIGIBLE = 0.05
PAPER_SOURCE = "README results table (reproductions/paper/main_table.csv)"
ABLATION_SOURCE = "paper ablation (reproductions/paper/ablation.csv)"
INTERVAL_LEVEL = 0.95
CONTROL_NOTE = "the host trained further by stage 1 and stage 2 without TSF and [BOX]; not in the paper"


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(statistics.fmean(values)), (float(statistics.stdev(values)) if len(values) > 1 else None)


def t_interval(values: Sequence[float], level: float = INTERVAL_LEVEL) -> tuple[float, float] | None:
    """The ``level`` Student t interval of the mean of ``values`` (paired per-seed differences); None with fewer
    than two values (no spread to estimate)."""
    if len(values) < 2:
        return None
    mean, sem = statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sem
    return mean - half, mean + half


def fmt_interval(interval: tuple[float, float] | None, digits: int = 2) -> str:
    return "n/a" if interval is None else f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"


def fmt(mean: float | None, std: float | None, digits: int = 1, sign: bool = False) -> str:
    if mean is None:
        return "n/a"
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else "")


# ----------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------
def _method(host: str, variant: str) -> str:
    return HOST_NAMES[host] + {"sparrow": " + SPARROW", CONTROL: " control"}.get(variant, "")


def main_table_frame(m: Measurements, digits: int = 1):
    """The paper's layout: one row per method (host, host control, host + SPARROW), one column per benchmark,
    each cell ``mean ± std`` over seeds (``n/a`` where nothing was computed)."""
    rows = {}
    for host in m.plan.hosts:
        for variant in MAIN_VARIANTS:
            rows[_method(host, variant)] = {
                TITLES[c]: fmt(*mean_std(m.values(host, variant, c)), digits) for c in COLUMNS
            }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = f"{m.plan.profile}, {len(m.plan.seeds)} seed(s)"
    return frame


def paper_table_frame(hosts: Sequence[str] = TABLE_HOSTS):
    """The published table in the same layout."""
    table = main_table()
    rows = {
        _method(h, v): {TITLES[c]: paper_value(h, v, c, table) for c in COLUMNS}
        for h in hosts
        for v in ("baseline", "sparrow")
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "paper"
    return frame


def gains_frame(m: Measurements, digits: int = 2):
    """Per host and column: measured baseline, control and + SPARROW (mean ± std over seeds); + SPARROW minus the
    baseline and minus the control, paired per seed (mean ± std, 95% t interval, seeds with a positive gain);
    the paper's gain (over its baseline)."""
    table = main_table()
    rows = []
    for host in m.plan.hosts:
        for c in COLUMNS:
            g = m.paired_gains(host, c)
            gc = m.paired_gains(host, c, base=CONTROL)
            paper_gain = round(paper_value(host, "sparrow", c, table) - paper_value(host, "baseline", c, table), 2)
            mean, std = mean_std(g)
            rows.append(
                {
                    "host": HOST_NAMES[host],
                    "column": TITLES[c],
                    "baseline": fmt(*mean_std(m.values(host, "baseline", c)), digits),
                    "control": fmt(*mean_std(m.values(host, CONTROL, c)), digits),
                    "+ SPARROW": fmt(*mean_std(m.values(host, "sparrow", c)), digits),
                    "gain vs baseline": fmt(mean, std, digits, sign=True),
                    "95% CI vs baseline": fmt_interval(t_interval(g), digits),
                    "seeds > baseline": f"{sum(v > 0 for v in g)}/{len(g)}",
                    "gain vs control": fmt(*mean_std(gc), digits, sign=True),
                    "95% CI vs control": fmt_interval(t_interval(gc), digits),
                    "seeds > control": f"{sum(v > 0 for v in gc)}/{len(gc)}",
                    "paper gain": f"{paper_gain:+.2f}",
                    "gain − paper gain": "n/a" if mean is None else f"{mean - paper_gain:+.2f}",
                }
            )
    return pd.DataFrame(rows).set_index(["host", "column"])


def ablation_frame(a: Measurements, digits: int = 2):
    """The ablation steps: measured Ref-DAVIS17 J&F (mean ± std), step-to-step change, the paper's value and
    change, and the measured minus the paper's value."""
    paper_steps = {s.step: s for s in ablation()}
    rows, prev, prev_paper = [], None, None
    for step in ABLATION_STEPS:
        mean, std = mean_std(a.values(ABLATION_HOST, step, ABLATION_COLUMN))
        p = paper_steps[step].ref_davis17
        notes = {c.note for c in a.cells if c.variant == step and c.value is None and c.note}
        rows.append(
            {
                "step": paper_steps[step].setting,
                "measured": fmt(mean, std, digits) if mean is not None else (next(iter(notes)) if notes else "n/a"),
                "change": "" if prev is None or mean is None else f"{mean - prev:+.{digits}f}",
                "paper": f"{p:.1f}",
                "paper change": "" if prev_paper is None else f"{p - prev_paper:+.1f}",
                "measured − paper": "n/a" if mean is None else f"{mean - p:+.{digits}f}",
            }
        )
        prev = mean if mean is not None else prev
        prev_paper = p
    return pd.DataFrame(rows).set_index("step")


CAPTION_METRICS = ("recall", "METEOR", "CIDEr", "CLAIR")


def _caption_values(m: Measurements, host: str, variant: str, metric: str) -> tuple[list[float], set[str]]:
    cells = [c for c in m.cells if (c.host, c.variant, c.column) == (host, variant, "videogcg")]
    values = [float(c.details[metric]) for c in cells if c.details.get(metric) is not None]
    notes = {c.details.get("notes", {}).get(metric.lower(), "") for c in cells if c.details.get(metric) is None}
    return values, {n for n in notes if n}


def caption_frame(m: Measurements, digits: int = 3):
    """VideoGCG's caption metrics beside its mIoU column: the phrase recall (a phrase found when a predicted tube
    covers its object at IoU >= 0.5 and names it alike, docs/evaluation.md §8), METEOR and CIDEr (pycocoevalcap, raw
    scale) and CLAIR (x100, only with a judge; otherwise the reason it was not computed, never a number)."""
    rows = {}
    for host in m.plan.hosts:
        for variant in MAIN_VARIANTS:
            row = {}
            for metric in CAPTION_METRICS:
                values, notes = _caption_values(m, host, variant, metric)
                row[metric] = fmt(*mean_std(values), digits) if values else ("; ".join(sorted(notes)) or "n/a")
            rows[_method(host, variant)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def seg_rate_frame(m: Measurements):
    """Share of answers that contained a [SEG] (a model that emits none scores 0 whatever its masks would be)."""
    rows = {}
    for host in m.plan.hosts:
        for variant in MAIN_VARIANTS:
            rows[_method(host, variant)] = {
                TITLES[c]: fmt(
                    *mean_std(
                        [
                            x.seg_found_rate
                            for x in m.cells
                            if (x.host, x.variant, x.column) == (host, variant, c) and x.seg_found_rate is not None
                        ]
                    ),
                    2,
                )
                for c in COLUMNS
            }
    return pd.DataFrame.from_dict(rows, orient="index")


# ----------------------------------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------------------------------
def _control_verdict(m: Measurements, host: str, column: str) -> tuple[str, bool | None]:
    """The sentence on + SPARROW against the control (its gain beyond the extra training), and whether it beats
    it (None when the control was not computed)."""
    gc = m.paired_gains(host, column, base=CONTROL)
    if not gc:
        notes = {x.note for x in m.cells if (x.host, x.variant, x.column) == (host, CONTROL, column) and x.note}
        return f"Against the control: not computed ({'; '.join(sorted(notes)) or 'no value'}).", None
    gm, gs = mean_std(gc)
    interval = t_interval(gc)
    numbers = (
        f"gain {fmt(gm, gs, 2, sign=True)}, 95% CI {fmt_interval(interval)}, positive in "
        f"{sum(v > 0 for v in gc)}/{len(gc)} seeds"
    )
    if interval is None:
        sure = "one seed: no interval"
    elif interval[0] > 0 or interval[1] < 0:
        sure = "its 95% interval excludes 0"
    else:
        sure = "its 95% interval includes 0"
    head = "Against the control (the same extra training): +SPARROW"
    if gm >= NEGLIGIBLE:
        return f"{head} beats it ({sure}): {numbers}.", True
    if gm > -NEGLIGIBLE:
        return f"{head} does NOT beat it (no difference at the table's precision; {sure}): {numbers}.", False
    return f"{head} does NOT beat it (it scores lower; {sure}): {numbers}.", False


def verdicts(m: Measurements) -> list[str]:
    """One line per host and column, from the measured numbers: + SPARROW against the baseline, then against the
    control; then a count."""
    if m.skipped:
        return [m.skipped]
    table = main_table()
    lines, wins, total, paper_wins = [], 0, 0, 0
    control_wins, control_total = 0, 0
    for host in m.plan.hosts:
        for c in COLUMNS:
            base, new = m.values(host, "baseline", c), m.values(host, "sparrow", c)
            paper_gain = paper_value(host, "sparrow", c, table) - paper_value(host, "baseline", c, table)
            what = f"{HOST_NAMES[host]}, {TITLES[c]}"
            if not base or not new:
                notes = {x.note for x in m.cells if x.host == host and x.column == c and x.note}
                lines.append(f"{what}: not computed ({'; '.join(sorted(notes)) or 'no value'}).")
                continue
            g = m.paired_gains(host, c)
            gm, gs = mean_std(g)
            against_control, beats_control = _control_verdict(m, host, c)
            control_total += beats_control is not None
            control_wins += bool(beats_control)
            total += 1
            paper_wins += paper_gain > 0
            numbers = (
                f"{fmt(*mean_std(new))} vs {fmt(*mean_std(base))}, gain {fmt(gm, gs, 2, sign=True)}, "
                f"positive in {sum(v > 0 for v in g)}/{len(g)} seeds; paper {paper_gain:+.2f}"
            )
            if gm >= NEGLIGIBLE:
                wins += 1
                spread = (
                    ""
                    if gs is None
                    else (" (more than its seed-to-seed spread)" if gm > gs else " (within its seed-to-seed spread)")
                )
                line = f"{what}: +SPARROW beats the baseline{spread}: {numbers}."
            elif gm > -NEGLIGIBLE:
                line = (
                    f"{what}: +SPARROW does NOT beat the baseline (no difference at the table's precision): {numbers}."
                )
            else:
                line = f"{what}: +SPARROW does NOT beat the baseline (it scores lower): {numbers}."
            lines.append(f"{line} {against_control}")
    lines.append(
        f"Overall on {m.plan.profile}: +SPARROW beats the baseline in {wins} of {total} host x column cells "
        f"(mean over {len(m.plan.seeds)} seed(s)); the paper reports a gain in {paper_wins} of them. "
        f"It beats the control (the same extra training without TSF and [BOX]) in {control_wins} of "
        f"{control_total} cells with a control."
    )
    return lines


def verdict_text(m: Measurements) -> str:
    return "\n".join(verdicts(m))


def ablation_verdicts(a: Measurements) -> list[str]:
    if a.skipped:
        return [a.skipped]
    paper_steps = {s.step: s for s in ablation()}
    lines = []
    for before, after in zip(ABLATION_STEPS, ABLATION_STEPS[1:]):
        x, y = a.values(ABLATION_HOST, before, ABLATION_COLUMN), a.values(ABLATION_HOST, after, ABLATION_COLUMN)
        p = paper_steps[after].ref_davis17 - paper_steps[before].ref_davis17
        what = f"{paper_steps[before].setting} -> {paper_steps[after].setting}"
        if not x or not y:
            lines.append(f"{what}: not computed ({a.details.get('tsf_test') if after == 'tsf_test' else 'no value'}).")
            continue
        d = statistics.fmean(y) - statistics.fmean(x)
        word = (
            "improves"
            if d >= NEGLIGIBLE
            else "does NOT improve (no difference at the table's precision)"
            if d > -NEGLIGIBLE
            else "does NOT improve (lower)"
        )
        lines.append(
            f"{what}: {word}: Ref-DAVIS17 J&F {d:+.2f} ({statistics.fmean(x):.2f} -> "
            f"{statistics.fmean(y):.2f}); paper {p:+.1f}."
        )
    return lines


def training_estimate_lines(m: Measurements) -> list[str]:
    """Under ``paper``: the training cost of each + SPARROW row no one released, from measured steps."""
    return [
        f"{name}: stage1 {e['stage1']['seconds_per_step']:.2f} s/step x {e['stage1']['recipe_steps']}, stage2 "
        f"{e['stage2']['seconds_per_step']:.2f} s/step x {e['stage2']['recipe_steps']}: about {e['hours']:.1f} h "
        f"on {e['device']}"
        for name, e in m.details.get("training_estimates", {}).items()
    ]


def paper_checks(m: Measurements, a: Measurements | None = None, tolerance: float = PAPER_TOLERANCE) -> list[str]:
    """Under ``paper``: each measured number against the published one within ``tolerance`` points."""
    if m.plan.profile != "paper":
        return [
            f"not a paper run ({m.plan.profile}): SPARROW-Mini numbers are not comparable with the paper's; "
            "compare the gains instead"
        ]
    if m.skipped:
        return [m.skipped]
    table, lines = main_table(), []
    for host in m.plan.hosts:
        for variant in ("baseline", "sparrow"):
            for c in COLUMNS:
                v = m.values(host, variant, c)
                p = paper_value(host, variant, c, table)
                label = TITLES[c]
                if c == "ref_davis17" and REF_DAVIS17_PROTOCOL[host] == "expression":
                    # compared under the protocol of the published number (the table shows the DAVIS one)
                    cell = m.cell(host, variant, c, m.plan.seeds[0])
                    per = cell.details.get("J&F per expression") if cell is not None else None
                    v = [] if per is None else [float(per)]
                    label = f"{TITLES[c]} (per expression, as {HOST_NAMES[host]} reports it)"
                if not v:
                    why = sorted({x.note for x in m.cells if (x.host, x.variant, x.column) == (host, variant, c)})
                    because = f" ({'; '.join(w for w in why if w)})" if any(why) else ""
                    lines.append(f"{_method(host, variant)}, {label}: not computed{because}, paper {p}")
                    continue
                ok = abs(v[0] - p) <= tolerance
                lines.append(
                    f"{_method(host, variant)}, {label}: {v[0]:.2f} vs paper {p} "
                    f"({v[0] - p:+.2f}) {'within' if ok else 'OUTSIDE'} ±{tolerance}"
                )
    if a is not None and not a.skipped:
        for step in ablation():
            v = a.values(ABLATION_HOST, step.step, ABLATION_COLUMN)
            if v:
                ok = abs(v[0] - step.ref_davis17) <= tolerance
                lines.append(
                    f"ablation {step.setting}: {v[0]:.2f} vs paper {step.ref_davis17} "
                    f"({v[0] - step.ref_davis17:+.2f}) {'within' if ok else 'OUTSIDE'} ±{tolerance}"
                )
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Chart data and recorded numbers
# ----------------------------------------------------------------------------------------------------------------
def gain_series(m: Measurements) -> dict[str, dict[str, tuple[float | None, float | None, float]]]:
    """``{host: {column title: (measured gain mean, std, paper gain)}}`` for :func:`sparrow.viz.tables.gains_figure`."""
    table = main_table()
    return {
        HOST_NAMES[h]: {
            TITLES[c]: (
                *mean_std(m.paired_gains(h, c)),
                round(paper_value(h, "sparrow", c, table) - paper_value(h, "baseline", c, table), 2),
            )
            for c in COLUMNS
        }
        for h in m.plan.hosts
    }


def control_gain_series(m: Measurements) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """``{host: {column title: (mean, std)}}`` of + SPARROW minus the control, paired per seed, for the
    ``control`` bars of :func:`sparrow.viz.tables.gains_figure`."""
    return {
        HOST_NAMES[h]: {TITLES[c]: mean_std(m.paired_gains(h, c, base=CONTROL)) for c in COLUMNS} for h in m.plan.hosts
    }


def recorded_numbers(m: Measurements, a: Measurements) -> list[dict[str, Any]]:
    """Every number notebook 04 reports, as keyword arguments of :meth:`sparrow.results.Recorder.add`."""
    table = main_table()
    steps = {s.step: s for s in ablation()}
    out: list[dict[str, Any]] = []
    n = len(m.plan.seeds)
    every = f"{m.plan.profile}, mean over {n} training seed(s) {list(m.plan.seeds)}, data seed {m.plan.data_seed}"
    base_note = (
        f"{m.plan.profile}, one host checkpoint (training seed {m.plan.host_seed}), data seed {m.plan.data_seed}"
    )
    for host in m.plan.hosts:
        for variant in MAIN_VARIANTS:
            note = base_note if variant == "baseline" else every
            for b in m.plan.benchmarks:  # a plan may score only some columns
                c = b.key
                mean, std = mean_std(m.values(host, variant, c))
                why = (
                    "; ".join(
                        sorted(
                            {x.note for x in m.cells if (x.host, x.variant, x.column) == (host, variant, c) and x.note}
                        )
                    )
                    or None
                )
                in_paper = variant != CONTROL
                out.append(
                    {
                        "name": f"main/{host}/{variant}/{c}/mean",
                        "value": mean,
                        "unit": f"{b.metric} (%)",
                        "paper": paper_value(host, variant, c, table) if in_paper else None,
                        "paper_source": PAPER_SOURCE if in_paper else None,
                        "note": why or (note if in_paper else f"{note}; {CONTROL_NOTE}"),
                    }
                )
                out.append(
                    {
                        "name": f"main/{host}/{variant}/{c}/std",
                        "value": std,
                        "unit": f"{b.metric} (%)",
                        "note": None if std is not None else "one seed: no spread",
                    }
                )
                for s in m.plan.seeds_of(variant):
                    cell = m.cell(host, variant, c, s)
                    out.append(
                        {
                            "name": f"main/{host}/{variant}/{c}/seed{s}",
                            "value": cell.value if cell else None,
                            "unit": f"{b.metric} (%)",
                            "note": cell.note if cell and cell.note else None,
                        }
                    )
        for c in COLUMNS:
            g = m.paired_gains(host, c)
            gm, gs = mean_std(g)
            paper_gain = round(paper_value(host, "sparrow", c, table) - paper_value(host, "baseline", c, table), 2)
            out.append(
                {
                    "name": f"gain/{host}/{c}/mean",
                    "value": gm,
                    "unit": "points",
                    "paper": paper_gain,
                    "paper_source": PAPER_SOURCE,
                }
            )
            out.append({"name": f"gain/{host}/{c}/std", "value": gs, "unit": "points"})
            out += _interval_numbers(f"gain/{host}/{c}", g)
            gc = m.paired_gains(host, c, base=CONTROL)
            gcm, gcs = mean_std(gc)
            beyond = "+ SPARROW minus control, paired per seed: the gain beyond the same extra training"
            out.append({"name": f"gain_vs_control/{host}/{c}/mean", "value": gcm, "unit": "points", "note": beyond})
            out.append({"name": f"gain_vs_control/{host}/{c}/std", "value": gcs, "unit": "points"})
            out += _interval_numbers(f"gain_vs_control/{host}/{c}", gc)
        for variant in MAIN_VARIANTS:
            for metric in CAPTION_METRICS:
                values, notes = _caption_values(m, host, variant, metric)
                mean, std = mean_std(values)
                out.append(
                    {
                        "name": f"gcg/{host}/{variant}/{metric}/mean",
                        "value": mean,
                        "unit": "x100" if metric == "CLAIR" else "score",
                        "note": "; ".join(sorted(notes)) or None,
                    }
                )
                out.append(
                    {
                        "name": f"gcg/{host}/{variant}/{metric}/std",
                        "value": std,
                        "unit": "x100" if metric == "CLAIR" else "score",
                    }
                )
    for step in ABLATION_STEPS:
        mean, std = mean_std(a.values(ABLATION_HOST, step, ABLATION_COLUMN))
        reason = a.details.get("tsf_test") if step == "tsf_test" and mean is None else None
        if mean is None and reason is None:
            reason = "; ".join(sorted({c.note for c in a.cells if c.variant == step and c.note})) or None
        out.append(
            {
                "name": f"ablation/{step}/mean",
                "value": mean,
                "unit": "J&F (%)",
                "paper": steps[step].ref_davis17,
                "paper_source": ABLATION_SOURCE,
                "note": reason or (base_note if step == "baseline" else every),
            }
        )
        out.append({"name": f"ablation/{step}/std", "value": std, "unit": "J&F (%)"})
        for s in m.plan.seeds_of(step):
            cell = a.cell(ABLATION_HOST, step, ABLATION_COLUMN, s)
            out.append({"name": f"ablation/{step}/seed{s}", "value": cell.value if cell else None, "unit": "J&F (%)"})
    for name, why in m.details.get("skipped_rows", {}).items():  # paper: rows without weights, and why
        out.append({"name": f"skipped/{name}", "value": None, "note": why})
    for name, estimate in m.details.get("training_estimates", {}).items():  # paper: the rows no one released
        for stage in ("stage1", "stage2"):
            out.append(
                {
                    "name": f"training_estimate/{name}/{stage}/seconds_per_step",
                    "value": estimate[stage]["seconds_per_step"],
                    "unit": "s",
                    "note": f"measured on {estimate['device']}; the recipe has {estimate[stage]['recipe_steps']} steps",
                }
            )
        out.append(
            {
                "name": f"training_estimate/{name}/hours",
                "value": estimate["hours"],
                "unit": "h",
                "note": f"stage1 + stage2 of the paper recipe at the measured step time on {estimate['device']}",
            }
        )
    for name, switches in m.details.get("settings", {}).items():  # paper: what made each row's numbers
        note = "; ".join(f"{k}: {v}" for k, v in switches.items() if k != "system_prompt")
        out.append({"name": f"settings/{name}", "value": None, "note": note})
    for b in m.plan.benchmarks:
        out.append(
            {
                "name": f"subset/{b.key}/{b.unit}",
                "value": _count(m, b.key, "units"),
                "unit": "count",
                "note": f"{b.source}/{b.split}, evenly spread subset (limit {b.limit} {b.unit})",
            }
        )
        out.append(
            {"name": f"subset/{b.key}/scored_expressions", "value": _count(m, b.key, "expressions"), "unit": "count"}
        )
    return out


def _interval_numbers(prefix: str, gains: Sequence[float]) -> list[dict[str, Any]]:
    """The 95% t interval of paired gains as two recorded numbers (None with one seed)."""
    interval = t_interval(gains)
    note = None if interval is not None else "one seed: no interval"
    return [
        {
            "name": f"{prefix}/ci95_{end}",
            "value": None if interval is None else interval[i],
            "unit": "points",
            "note": note or f"Student t over {len(gains)} paired seed differences",
        }
        for i, end in enumerate(("low", "high"))
    ]


def _count(m: Measurements, column: str, what: str) -> int | None:
    """The subset size of a column, the same for every model that ran (None if they disagree or none ran); a
    model that was not run (a paper control without its checkpoint: no units, no value) does not count."""
    counts = {getattr(c, what) for c in m.cells if c.column == column and (c.units or c.value is not None)}
    return counts.pop() if len(counts) == 1 else None


def ablation_series(a: Measurements) -> tuple[list[str], list[float], list[float | None], list[float | None]]:
    """(step names, paper values, measured means, measured stds) for :func:`sparrow.viz.tables.ablation_figure`."""
    paper_steps = {s.step: s for s in ablation()}
    stats = [mean_std(a.values(ABLATION_HOST, s, ABLATION_COLUMN)) for s in ABLATION_STEPS]
    return (
        [paper_steps[s].setting for s in ABLATION_STEPS],
        [paper_steps[s].ref_davis17 for s in ABLATION_STEPS],
        [m for m, _ in stats],
        [s for _, s in stats],
    )


def text_dependence_verdict(rows: list[dict]) -> str:
    """One sentence from :func:`sparrow.experiments.tables.tables_text_dependence`'s rows: how many runs give
    (almost) the same mask for every text of a video, with the measured range beside the ground truth's."""
    measured = [r for r in rows if r["predicted_pair_iou"] is not None]
    if not measured:
        return "Text dependence: not measured (no MeViS / Ref-YouTube-VOS predictions with two referents a video)."
    ignoring = [r for r in measured if r["ignores_text"]]
    pred = [r["predicted_pair_iou"] for r in measured]
    truth = [r["ground_truth_pair_iou"] for r in measured]
    head = (
        f"{len(ignoring)} of {len(measured)} (host, variant, benchmark) runs give the same mask for different "
        f"referents of a video (pair IoU {min(pred):.3f}-{max(pred):.3f}; ground truth {min(truth):.3f}-"
        f"{max(truth):.3f})"
    )
    if len(ignoring) == len(measured):
        return (
            head + ": the masks do not follow the text, so these J&F numbers measure a text-independent "
            "segmentation, and neither TSF nor [BOX] can show a gain through them."
        )
    accuracy = [r["referent_accuracy"] for r in measured if r.get("referent_accuracy") is not None]
    if accuracy:
        head += (
            f"; referent accuracy {min(accuracy):.3f}-{max(accuracy):.3f} (text-blind <= 0.5), "
            f"{sum(a >= 0.7 for a in accuracy)} of {len(accuracy)} runs at 0.7 or more"
        )
    return head + "."


def text_dependence_numbers(rows: list[dict]) -> list[dict]:
    """The rows as :meth:`sparrow.results.Recorder.add` keyword arguments (notebook 04's last cell)."""
    out = []
    for r in rows:
        if r["predicted_pair_iou"] is None:
            continue
        name = f"text/{r['host']}/{r['variant']}/{r['benchmark']}"
        note = f"{r['pairs']} pairs of same-video expressions with different referents"
        if r.get("referent_accuracy") is not None:
            out.append(
                {
                    "name": f"{name}/referent_accuracy",
                    "value": r["referent_accuracy"],
                    "unit": "fraction",
                    "note": f"{r['referent_cases']} referent cases (text-blind <= 0.5)",
                }
            )
        out.append(
            {"name": f"{name}/predicted_pair_iou", "value": r["predicted_pair_iou"], "unit": "IoU", "note": note}
        )
        out.append(
            {"name": f"{name}/ground_truth_pair_iou", "value": r["ground_truth_pair_iou"], "unit": "IoU", "note": note}
        )
    return out


def rescore_text(scored: Any, table_value: float | None) -> str:
    """What ``sparrow score`` printed for one run beside notebook 04's number for it, and whether they agree."""
    if scored is None:
        return "paper: score the real predictions with `sparrow score` (README, Scoring your own predictions)"
    ((title, row),) = scored.tables.items()
    agree = table_value is not None and abs(row["J&F"] - table_value) <= 1e-9
    return (
        f"{scored.format_table()}\nnotebook 04's number for this run: "
        + ("none" if table_value is None else f"{table_value:.4f}")
        + (" (the same)" if agree else " (DIFFERENT: report it)")
    )


def hard_case_frame(rows: list[dict], digits: int = 1):
    """:func:`sparrow.experiments.tables.hard_case_rows` as a table: one row per (host, case), per variant its J&F
    and referent accuracy (``n/a`` without a pair of disjoint referents)."""
    if not rows:
        return pd.DataFrame()
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        row = table.setdefault(
            (HOST_NAMES[r["host"]], r["case"]), {"videos": r["videos"], "expressions": r["expressions"]}
        )
        method = _method(r["host"], r["variant"]).removeprefix(HOST_NAMES[r["host"]]).strip() or "baseline"
        row[f"J&F {method}"] = f"{r['jf']:.{digits}f}"
        accuracy = r["referent_accuracy"]
        row[f"referent acc. {method}"] = "n/a" if accuracy is None else f"{accuracy:.2f} ({r['referent_cases']})"
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index.names = ["host", f"hard case ({HARD_CASE_BENCHMARK})"]
    return frame


def hard_case_numbers(rows: list[dict]) -> list[dict[str, Any]]:
    """The rows as :meth:`sparrow.results.Recorder.add` keyword arguments (notebook 04's last cell)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        name = f"hard/{r['host']}/{r['variant']}/{r['case']}"
        note = f"{r['videos']} {HARD_CASE_BENCHMARK} videos, {r['expressions']} expressions"
        out.append({"name": f"{name}/jf", "value": r["jf"], "unit": "J&F (%)", "note": note})
        out.append(
            {
                "name": f"{name}/referent_accuracy",
                "value": r["referent_accuracy"],
                "unit": "fraction",
                "note": f"{r['referent_cases']} referent cases (text-blind <= 0.5)"
                if r["referent_accuracy"] is not None
                else "no pair of expressions with disjoint referents",
            }
        )
    return out
