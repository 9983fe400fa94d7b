"""The paper's numbers as data (reproductions/paper/*.csv), the claims recomputed from them, and the table builders.

Each claim of the abstract is recomputed from the published table, and ``claims.csv`` must record exactly what the
recomputation gives (value and verdict): the table supports "consistent gains" (18 of 18 gains positive), "+8.9
J&F on RVOS" (the largest RVOS gain, VideoGLaMM on MeViS val^u: 57.4 - 48.5) and "+5 mIoU on grounding" (the
largest VidSTG gain is 5.49, every host gains more than 5); "+5.4 CLAIR on GCG" cannot be checked because the
table has no CLAIR column.
"""

from __future__ import annotations

import csv

import pytest
from scipy import stats

from sparrow.eval import paper
from sparrow.eval.benchmarks import COLUMNS, benchmarks_for
from sparrow.storage import DataError


def test_main_table_has_every_host_variant_and_column_with_a_source():
    table = paper.main_table()
    assert [(r.host, r.variant) for r in table] == [(h, v) for h in paper.TABLE_HOSTS for v in paper.VARIANTS]
    for row in table:
        assert set(row.values) == set(COLUMNS) and row.source
    assert paper.paper_value("videoglamm", "sparrow", "mevis_valid_u") == 57.4
    assert paper.paper_value("glus", "baseline", "vidstg") == 29.92


def test_notebook_03_reads_its_paper_numbers_from_the_table():
    from sparrow.experiments.validation import paper_mevis_valid_u

    assert paper_mevis_valid_u("videoglamm") == (48.5, 57.4)
    assert paper_mevis_valid_u("glus") == (59.8, 61.9)


def test_ablation_steps_and_switches():
    steps = paper.ablation()
    assert [(s.step, s.ref_davis17) for s in steps] == [
        ("baseline", 69.5),
        ("tsf", 72.4),
        ("box", 76.8),
        ("tsf_test", 77.7),
    ]
    assert [(s.tsf_train, s.box, s.tsf_test) for s in steps] == [
        (False, False, False),
        (True, False, False),
        (True, True, False),
        (True, True, True),
    ]
    assert all(s.source for s in steps)


def test_claims_csv_records_what_the_table_supports():
    """How each is computed: gains = (host + SPARROW) - host per host and column, two decimals; "up to +X" is
    supported when the largest covered gain rounds to X at the claim's precision."""
    recorded = {c.claim: c for c in paper.claims()}
    computed = paper.check_claims()
    assert set(recorded) == set(computed)
    for name, check in computed.items():
        assert (recorded[name].table_value, recorded[name].supported, recorded[name].finding) == (
            check.table_value,
            check.supported,
            check.finding,
        ), name
    assert computed["consistent_gains"].table_value == "18/18" and computed["consistent_gains"].supported == "yes"
    assert computed["rvos_jf"].table_value == "8.90" and computed["rvos_jf"].supported == "yes"
    assert "videoglamm, MeViS val^u" in computed["rvos_jf"].finding
    assert computed["grounding_miou"].table_value == "5.49" and computed["grounding_miou"].supported == "yes"
    assert "min +5.25" in computed["grounding_miou"].finding
    assert computed["gcg_clair"].supported == "not checkable" and computed["gcg_clair"].table_value == ""
    assert computed["ablation_baseline"].supported == computed["ablation_box"].supported == "yes"


def test_a_claim_the_table_contradicts_is_reported_as_no(tmp_path):
    table = paper.main_table()
    claim = paper.Claim("rvos_jf", "up to +9.9", "9.9", "J&F", "", "", "no", "", "test")
    assert paper.check_claims(table, paper.ablation(), [claim])["rvos_jf"].supported == "no"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace("57.4", "fifty"), "main_table.csv:7: column mevis_valid_u is not a number"),
        (lambda text: text.replace(",source,note", ",origin,note"), "missing column"),
        (lambda text: "\n".join(text.splitlines()[:-1]) + "\n", "one row per host and variant"),
    ],
)
def test_bad_paper_csv_names_the_file_and_line(tmp_path, edit, message):
    path = tmp_path / "main_table.csv"
    path.write_text(edit((paper.paper_dir() / "main_table.csv").read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(DataError, match=message):
        paper.main_table(path)


def test_a_row_without_a_source_is_refused(tmp_path):
    src = paper.paper_dir() / "ablation.csv"
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    rows[1]["source"] = ""
    path = tmp_path / "ablation.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DataError, match="ablation.csv:3: every row needs a source"):
        paper.ablation(path)


# -- table builders on hand-made measurements -------------------------------------------------------------------


def _measurements(values):
    from sparrow.experiments.tables import Cell, Measurements, TablePlan

    plan = TablePlan("mini", 0, (0, 1, 2), benchmarks=benchmarks_for("mini"))
    cells = [
        Cell(h, v, s, c, values(h, v, s, c), units=3)
        for h in plan.hosts
        for v in ("baseline", "control", "sparrow")
        for s in (plan.seeds[:1] if v == "baseline" else plan.seeds)  # one host checkpoint: the baseline
        for c in COLUMNS
    ]
    return Measurements(plan, cells)


def test_tables_verdicts_and_recorded_numbers():
    from sparrow.experiments import table_report as report
    from sparrow.experiments import tables
    from sparrow.results import Recorder

    def values(host, variant, seed, column):
        base = 40.0  # the baseline, one checkpoint; the other variants' seeds move around it
        if host == "glus" and column == "vidstg":
            return base - (2.0 if variant == "sparrow" else 0.0)  # SPARROW loses here
        if host == "unipixel" and column == "videogcg":
            return base  # a tie
        if host == "unipixel" and column == "mevis_valid_u":
            return base + (0.01 if variant == "sparrow" else 0.0)  # positive, but below the tables' precision
        if variant == "control":  # extra training alone: half the gain on MeViS val, all of it elsewhere
            return base + ((1.0 + seed) / 2 if column == "mevis_valid" else 1.0 + seed)
        return base + (1.0 + seed if variant == "sparrow" else 0.0)

    m = _measurements(values)
    frame = report.main_table_frame(m)
    assert frame.shape == (9, 6) and frame.loc["VideoGLaMM + SPARROW", "MeViS val"] == "42.0 ± 1.0"
    assert frame.loc["VideoGLaMM control", "MeViS val"] == "41.0 ± 0.5"
    assert frame.loc["VideoGLaMM", "MeViS val"] == "40.0"  # one checkpoint: no spread
    gains = report.gains_frame(m)
    row = gains.loc[("VideoGLaMM", "MeViS val")]
    assert row["gain vs baseline"] == "+2.00 ± 1.00" and row["paper gain"] == "+2.30"
    # paired gains over the control 0.5, 1.0, 1.5: t(0.975, 2) * 0.5 / sqrt(3) = 1.24 either side of 1.00
    assert row["gain vs control"] == "+1.00 ± 0.50" and row["95% CI vs control"] == "[-0.24, +2.24]"
    assert row["95% CI vs baseline"] == "[-0.48, +4.48]" and row["seeds > control"] == "3/3"
    assert gains.loc[("VideoGLaMM", "Ref-DAVIS17"), "gain vs control"] == "+0.00 ± 0.00"
    text = report.verdict_text(m)
    assert "GLUS, VidSTG mIoU: +SPARROW does NOT beat the baseline (it scores lower)" in text
    assert "UniPixel, VideoGCG mIoU: +SPARROW does NOT beat the baseline (no difference" in text
    assert "VideoGLaMM, MeViS val: +SPARROW beats the baseline (more than its seed-to-seed spread)" in text
    assert "UniPixel, MeViS val^u: +SPARROW does NOT beat the baseline (no difference" in text
    assert "beats the baseline in 15 of 18" in text
    line = next(x for x in text.splitlines() if x.startswith("VideoGLaMM, MeViS val:"))
    assert "Against the control (the same extra training): +SPARROW beats it (its 95% interval includes 0)" in line
    line = next(x for x in text.splitlines() if x.startswith("VideoGLaMM, Ref-DAVIS17:"))
    assert "+SPARROW does NOT beat it (no difference at the table's precision; its 95% interval" in line
    assert "beats the control (the same extra training without TSF and [BOX]) in 3 of 18 cells" in text

    from sparrow.experiments.tables import Cell, Measurements

    a = Measurements(
        m.plan,
        [
            Cell("videoglamm", step, s, "ref_davis17", 50.0 + i + s)
            for i, step in enumerate(tables.ABLATION_STEPS[:3])
            for s in m.plan.seeds
        ],
    )
    a.cells += [Cell("videoglamm", "tsf_test", s, "ref_davis17", None, "not computed: no TSF") for s in m.plan.seeds]
    a.details["tsf_test"] = "not computed: no TSF"
    ab = report.ablation_frame(a)
    assert ab.loc["+ TSF in training", "change"] == "+1.00" and ab.loc["+ TSF at test", "measured"].startswith("not")
    assert any("not computed" in line for line in report.ablation_verdicts(a))
    rec = Recorder("04_benchmark_tables", "mini", 0)
    for number in report.recorded_numbers(m, a):
        rec.add(**number)
    names = {x.name for x in rec.metrics}
    assert "main/videoglamm/sparrow/ref_davis17/mean" in names and "ablation/tsf_test/mean" in names
    assert next(x for x in rec.metrics if x.name == "main/glus/baseline/vidstg/mean").paper == 29.92
    got = {x.name: x for x in rec.metrics}
    assert got["main/glus/control/vidstg/mean"].paper is None and got["main/glus/control/vidstg/seed2"].value == 40.0
    # the baseline is recorded once, at the host seed, with what it is
    assert "main/glus/baseline/vidstg/seed0" in got and "main/glus/baseline/vidstg/seed1" not in got
    assert "one host checkpoint" in got["main/glus/baseline/vidstg/mean"].note
    assert got["gain_vs_control/videoglamm/mevis_valid/mean"].value == pytest.approx(1.0)
    low, high = stats.t.interval(0.95, 2, loc=1.0, scale=0.5 / 3**0.5)
    assert got["gain_vs_control/videoglamm/mevis_valid/ci95_low"].value == pytest.approx(low)
    assert got["gain_vs_control/videoglamm/mevis_valid/ci95_high"].value == pytest.approx(high)
    assert got["gain/videoglamm/mevis_valid/ci95_low"].value == pytest.approx(2.0 - (high - 1.0) * 2)


def test_one_seed_has_no_interval_and_a_missing_control_is_not_computed():
    import dataclasses

    from sparrow.experiments import table_report as report
    from sparrow.experiments.tables import Cell, Measurements
    from sparrow.results import Recorder

    m = _measurements(lambda h, v, s, c: 40.0 + (1.0 if v == "sparrow" else 0.0))
    m.plan = dataclasses.replace(m.plan, seeds=(0,))
    m.cells = [c for c in m.cells if c.seed == 0]
    assert report.t_interval([1.0]) is None
    gains = report.gains_frame(m)
    assert (gains["95% CI vs control"] == "n/a").all() and (gains["gain vs control"] == "+1.00").all()
    assert "beats it (one seed: no interval)" in report.verdict_text(m)
    rec = Recorder("04_benchmark_tables", "mini", 0)
    for number in report.recorded_numbers(m, Measurements(m.plan)):
        rec.add(**number)
    low = next(x for x in rec.metrics if x.name == "gain_vs_control/glus/vidstg/ci95_low")
    assert low.value is None and low.note == "one seed: no interval"
    m.cells = [c for c in m.cells if c.variant != "control"]
    m.cells += [Cell("glus", "control", 0, "vidstg", None, "not computed: no glus-control checkpoint")]
    rec = Recorder("04_benchmark_tables", "mini", 0)
    for number in report.recorded_numbers(m, Measurements(m.plan)):
        rec.add(**number)
    assert (
        next(x for x in rec.metrics if x.name == "subset/vidstg/expressions").value == 3
    )  # the control is not counted
    line = next(x for x in report.verdicts(m) if x.startswith("GLUS, VidSTG mIoU:"))
    assert "Against the control: not computed (not computed: no glus-control checkpoint)" in line
    assert report.main_table_frame(m).loc["GLUS control", "VidSTG mIoU"] == "n/a"


def test_paper_assets_absent_skip_with_a_message(tmp_path):
    from sparrow.experiments import table_report as report
    from sparrow.experiments import tables

    plan = tables.TablePlan.for_profile("paper", 0)
    assets = tables.find_paper_assets(plan, tmp_path / "curated", tmp_path / "ckpt")
    assert not assets.ok and "SKIPPED" in assets.message and "videoglamm-sparrow" in assets.message
    main = tables.measure_main(plan, assets)
    assert main.skipped and report.verdicts(main) == [main.skipped]
    assert report.paper_checks(main) == [main.skipped]
    assert tables.measure_ablation(plan, main, assets).skipped


def test_gain_and_ablation_figures():
    from sparrow.experiments import table_report as report
    from sparrow.viz.tables import ablation_figure, gains_figure

    m = _measurements(lambda h, v, s, c: 10.0 + s + (1.0 if v == "sparrow" else 0.0))
    fig = gains_figure(report.gain_series(m), title="gains")
    assert len(fig.axes) == 3
    fig = gains_figure(report.gain_series(m), control=report.control_gain_series(m))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["paper", "reproduced", "vs control"]
    assert len(fig.axes[0].patches) == 3 * len(COLUMNS)
    fig = ablation_figure(["a", "b"], [1.0, 2.0], [0.5, None], [0.1, None])
    assert fig.axes


def test_paper_path_scores_checkpoints_and_compares_within_the_tolerance(tmp_path):
    """The `paper` code path on stand-in assets: smoke-size checkpoints and the curated smoke set."""
    from sparrow.data.curate import ensure_curated
    from sparrow.experiments import table_report as report
    from sparrow.experiments import tables
    from sparrow.train.variants import build_model, model_config

    curated = ensure_curated("smoke", 0)
    for name, (tsf, box) in (
        ("videoglamm-baseline", (False, False)),
        ("videoglamm-sparrow", (True, True)),
        ("videoglamm-tsf-only", (True, False)),
    ):
        build_model(model_config("videoglamm", "smoke", tsf, box, curated), 0).save_pretrained(tmp_path / "ck" / name)
    plan = tables.TablePlan("paper", 0, (0,), ("videoglamm",), benchmarks_for("smoke", ["mevis_valid", "ref_davis17"]))
    assets = tables.find_paper_assets(plan, curated, tmp_path / "ck")
    assert assets.ok, assets.message
    main = tables.measure_main(plan, assets)
    assert not main.skipped and {c.column for c in main.cells} == {"mevis_valid", "ref_davis17"}
    ablation = tables.measure_ablation(plan, main, assets)
    assert ablation.values("videoglamm", "tsf", "ref_davis17")
    assert not ablation.values("videoglamm", "tsf_test", "ref_davis17")  # no TSF run given: not computed
    assert "needs a finished tracked TSF run" in ablation.details["tsf_test"]
    lines = report.paper_checks(main, ablation)
    assert any("VideoGLaMM, MeViS val:" in line and "OUTSIDE ±1.0" in line for line in lines)
    # each row records what made its numbers (propagation, precision, decoding, ...)
    assert main.details["settings"]["videoglamm-baseline"]["propagation"] == "framewise"
    settings = {r["name"]: r for r in report.recorded_numbers(main, ablation)}["settings/videoglamm-sparrow"]
    assert settings["value"] is None and "propagation: framewise" in settings["note"]
    assert "precision: mixed" in settings["note"]


@pytest.fixture(scope="module")
def pooled_smoke():
    """Notebook 04's main table on smoke (VideoGLaMM, one seed) in a pool of two, on two columns."""
    import dataclasses

    from sparrow.experiments import tables

    plan = dataclasses.replace(
        tables.TablePlan.for_profile("smoke", 0),
        benchmarks=benchmarks_for("smoke", ["ref_davis17", "mevis_valid_u"]),
        workers=2,
    )
    return plan, tables.measure_main(plan)


def test_two_workers_train_the_ablation_runs_with_the_main_groups(pooled_smoke):
    """With a pool, the ablation host's main group also runs + TSF and TSF at test; measure_ablation then only
    reads them back, and gives the numbers a one-process run gives."""
    import dataclasses

    from sparrow.eval.runner import eval_root
    from sparrow.experiments import tables
    from sparrow.paths import runs_dir

    plan, main = pooled_smoke
    assert (runs_dir("smoke") / "videoglamm-seed0" / "tsf-only" / "run.json").is_file()
    assert (runs_dir("smoke") / "videoglamm-seed0" / "control" / "run.json").is_file()
    assert main.values("videoglamm", "control", "ref_davis17")
    assert list((eval_root("smoke") / "videoglamm-seed0").glob("sparrow+tsf-test-*/ref_davis17/metrics.json"))
    ablation = tables.measure_ablation(plan, main)
    again = tables.measure_ablation(dataclasses.replace(plan, workers=1), main)
    assert ablation.values("videoglamm", "tsf", "ref_davis17")
    for step in ("tsf", "tsf_test"):
        assert ablation.values("videoglamm", step, "ref_davis17") == again.values("videoglamm", step, "ref_davis17")


def test_hard_case_rows_score_each_case_from_the_predictions_on_disk(pooled_smoke):
    """On smoke: the one MeViS val^u video's tags give its rows; ``all`` is the table's own number."""
    from sparrow.experiments import table_report as report
    from sparrow.experiments import tables
    from sparrow.results import Recorder
    from sparrow.tsf.quality import read_hard_case_tags

    plan, main = pooled_smoke
    rows = tables.hard_case_rows(plan)
    curated = tables.ensure_curated("smoke", 0)
    (video,) = tables.get_benchmark("mevis_valid_u", "smoke").select(tables.CuratedDataset(curated))
    cases = [c for c in tables.HARD_CASES if c in read_hard_case_tags(curated)[video]]
    assert cases and {r["variant"] for r in rows} == set(tables.MAIN_VARIANTS)
    for variant in tables.MAIN_VARIANTS:
        mine = {r["case"]: r for r in rows if r["variant"] == variant}
        assert list(mine) == ["all", *cases]  # no "none": the video has hard cases
        assert mine["all"]["jf"] == pytest.approx(main.values("videoglamm", variant, "mevis_valid_u")[0], abs=1e-9)
        text = next(
            r
            for r in tables.tables_text_dependence(plan)
            if r["variant"] == variant and r["benchmark"] == "mevis_valid_u"
        )
        assert mine["all"]["referent_accuracy"] == text["referent_accuracy"]
        assert mine["all"]["referent_cases"] == text["referent_cases"] > 0
    frame = report.hard_case_frame(rows)
    assert frame.shape[0] == 1 + len(cases) and "J&F control" in frame.columns
    rec = Recorder("04_benchmark_tables", "smoke", 0)
    for number in report.hard_case_numbers(rows):
        rec.add(**number)
    assert f"hard/videoglamm/control/{cases[0]}/referent_accuracy" in {x.name for x in rec.metrics}
    assert tables.hard_case_rows(tables.TablePlan.for_profile("paper", 0)) == []


def test_paper_checks_compare_ref_davis17_under_the_protocol_of_each_published_number():
    from sparrow.eval.paper import REF_DAVIS17_PROTOCOL, paper_value
    from sparrow.experiments import table_report as report
    from sparrow.experiments.tables import Cell, Measurements, TablePlan

    plan = TablePlan("paper", 0, (0,), benchmarks=benchmarks_for("paper", ["ref_davis17"]))
    cells = []
    for host in plan.hosts:
        for variant in ("baseline", "sparrow"):
            published = paper_value(host, variant, "ref_davis17")
            # the DAVIS protocol's value 10 points off; the per-expression one on the published number
            details = {"J&F per expression": published} if variant == "baseline" else {}
            cells.append(Cell(host, variant, 0, "ref_davis17", published - 10.0, "", details=details))
    lines = report.paper_checks(Measurements(plan, cells))
    for host, protocol in REF_DAVIS17_PROTOCOL.items():
        name = report.HOST_NAMES[host]
        base = next(x for x in lines if x.startswith(f"{name}, Ref-DAVIS17"))
        if protocol == "expression":
            assert f"(per expression, as {name} reports it)" in base and "+0.00) within" in base
            sparrow_line = next(x for x in lines if x.startswith(f"{name} + SPARROW, Ref-DAVIS17"))
            assert "not computed" in sparrow_line  # no per-expression value measured
        else:
            assert "per expression" not in base and "-10.00) OUTSIDE" in base
