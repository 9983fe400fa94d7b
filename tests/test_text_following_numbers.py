"""Referent accuracy beside J&F: notebook 03's held-out validation and notebook 04's text-dependence rows record
whether each model's masks follow its text."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.experiments import table_report
from sparrow.experiments.validation import quick_validation, recorded_numbers
from sparrow.train.variants import RunResult


@pytest.fixture(scope="module")
def curated():
    from sparrow.data.curate import ensure_curated

    return ensure_curated("smoke", 0)


class _Model:
    """Predicts each text's ground-truth referent (``oracle``) or one mask whatever the text."""

    def __init__(self, curated, oracle: bool):
        from sparrow.data.curated import CuratedDataset

        self.data, self.oracle = CuratedDataset(curated), oracle

    def predict_many(self, frames, texts):
        out = []
        for text in texts:
            exp = next(e for e in self.data.iter_expressions(source="mevis", split="valid_u") if e.text == text)
            truth = self.data.expression_masks(exp)
            masks = truth if self.oracle else np.zeros_like(truth)
            if not self.oracle:
                masks[:, : masks.shape[1] // 2] = True
            out.append(SimpleNamespace(masks=masks, seg_found=True, answer="[SEG]"))
        return out


@pytest.mark.parametrize("oracle", [True, False])
def test_quick_validation_measures_whether_masks_follow_the_text(curated, tmp_path, oracle):
    from sparrow.train.trainer import TrainResult

    done = TrainResult(tmp_path, "host", 2, tmp_path, tmp_path / "loss_log.csv", {"loss": 1.0}, {}, 1)
    run = RunResult("videoglamm", "smoke", 0, False, False, tmp_path, stages={"host": done})
    val = quick_validation(run, limit=None, curated_root=curated, model=_Model(curated, oracle))
    assert val.referent_cases > 0
    if oracle:
        assert val.referent_accuracy == 1.0 and val.predicted_pair_iou < 0.95
    else:
        assert val.referent_accuracy <= 0.5 and val.predicted_pair_iou == 1.0
    numbers = {n["name"]: n for n in recorded_numbers({"baseline": run}, {"baseline": val}, "videoglamm", "smoke")}
    assert numbers["val/referent_accuracy/baseline"]["value"] == val.referent_accuracy
    assert str(val.referent_cases) in numbers["val/referent_accuracy/baseline"]["note"]
    assert numbers["val/predicted_pair_iou/baseline"]["value"] == val.predicted_pair_iou


def test_notebook_04_rows_record_referent_accuracy_and_count_runs_past_the_target():
    rows = [
        dict(host="glus", variant=v, benchmark="mevis_valid_u", pairs=9, referent_cases=12, referent_accuracy=a,
             predicted_pair_iou=p, ground_truth_pair_iou=0.1, ignores_text=p >= 0.95)
        for v, a, p in (("baseline", 0.75, 0.3), ("sparrow", 0.5, 0.96))
    ]  # fmt: skip
    numbers = {n["name"]: n["value"] for n in table_report.text_dependence_numbers(rows)}
    assert numbers["text/glus/baseline/mevis_valid_u/referent_accuracy"] == 0.75
    assert numbers["text/glus/sparrow/mevis_valid_u/referent_accuracy"] == 0.5
    verdict = table_report.text_dependence_verdict(rows)
    assert "referent accuracy 0.500-0.750" in verdict and "1 of 2 runs at 0.7 or more" in verdict
