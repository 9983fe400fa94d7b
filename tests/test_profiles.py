"""The profile table: every config built for every (profile, host) equals the one pinned in
``tests/fixtures/profile_configs.json`` (what the kit built before the table existed), field for field."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from unittest import mock

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "profile_configs.json"
PROFILE_NAMES = ("smoke", "mini", "paper")
HOST_NAMES = ("videoglamm", "unipixel", "glus")
TRAIN_STAGES = ("sam", "host", "proposer", "stage1", "stage2")


def _built(make) -> dict | list | str:
    try:
        value = make()
    except ValueError as e:
        return {"error": f"ValueError: {e}"}
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def every_config() -> dict:
    """asdict of every for_profile result, keyed ``<constructor>/<profile>[/<host>][/<stage>]``."""
    from sparrow.data.synthetic.config import SynthConfig
    from sparrow.eval.benchmarks import benchmarks_for
    from sparrow.experiments import tables
    from sparrow.model.config import ModelConfig
    from sparrow.train.config import TrainConfig
    from sparrow.tsf.detection import DetectorConfig, DetectorTrainingConfig
    from sparrow.tsf.pipeline import TSFConfig
    from sparrow.tsf.quality import QualityConfig
    from sparrow.tsf.tracking import TrackerConfig

    out: dict = {}
    with mock.patch.object(os, "cpu_count", return_value=64):
        for p in PROFILE_NAMES:
            out[f"SynthConfig/{p}"] = _built(functools.partial(SynthConfig.for_profile, p))
            out[f"TablePlan/{p}"] = _built(functools.partial(tables.TablePlan.for_profile, p, 0))
            out[f"benchmarks_for/{p}"] = [dataclasses.asdict(b) for b in benchmarks_for(p)]
            out[f"DetectorConfig/{p}"] = _built(functools.partial(DetectorConfig.for_profile, p))
            out[f"DetectorTrainingConfig/{p}"] = _built(functools.partial(DetectorTrainingConfig.for_profile, p))
            out[f"QualityConfig/{p}"] = _built(functools.partial(QualityConfig.for_profile, p))
            out[f"TrackerConfig/{p}"] = _built(functools.partial(TrackerConfig.for_profile, p))
            out[f"TSFConfig/{p}"] = _built(functools.partial(TSFConfig.for_profile, p))
            for h in HOST_NAMES:
                out[f"ModelConfig/{p}/{h}"] = _built(functools.partial(ModelConfig.for_profile, p, h))
                for s in TRAIN_STAGES:
                    out[f"TrainConfig/{p}/{h}/{s}"] = _built(functools.partial(TrainConfig.for_profile, p, s, host=h))
    return json.loads(json.dumps(out))


def test_every_config_equals_the_pinned_one():
    pinned = json.loads(FIXTURE.read_text())
    built = every_config()
    assert sorted(built) == sorted(pinned)
    for key in pinned:
        assert built[key] == pinned[key], key


def test_every_profile_names_every_host_and_benchmark():
    from sparrow.eval.benchmarks import COLUMNS
    from sparrow.model.config import HOSTS
    from sparrow.profiles import PROFILES, get_profile

    for p in PROFILES:
        profile = get_profile(p)
        assert profile.name == p
        assert set(profile.model.hosts) == set(HOSTS) == set(profile.train.host_stage)
        assert tuple(profile.eval.limits) == COLUMNS
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")


if __name__ == "__main__":  # rewrite the fixture after an intended change of a profile
    rows = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(every_config().items())]
    FIXTURE.write_text("{\n" + ",\n".join(rows) + "\n}\n")
