"""Experiments: what the notebooks measure, composed from training (:mod:`sparrow.train`), TSF
(:mod:`sparrow.tsf`) and evaluation (:mod:`sparrow.eval`); the only layer that does all three.

- :mod:`sparrow.experiments.tables`: the paper's main table and Ref-DAVIS17 ablation (notebook 04): a
  :class:`~sparrow.experiments.tables.TablePlan`, the runs it trains and scores, the paper assets.
- :mod:`sparrow.experiments.table_report`: notebook 04's frames, verdicts, chart series and recorded numbers.
- :mod:`sparrow.experiments.scheduling`: units of work in order or in a process pool, each after the units it
  needs.
- :mod:`sparrow.experiments.validation`: notebook 03's checks (held-out J&F, predictions beside ground truth, the
  pretrained SAM2's prompt following, verdict and recorded numbers).
- :mod:`sparrow.experiments.explorer_inputs`: notebook 05's default inputs (notebook 04's predictions and
  notebook 02's TSF tracks, computed where the cache lacks them).

Layers go one way: data → model → tsf / train → eval → experiments → notebooks and the CLI
(``tests/test_import_graph.py`` holds every module to it).
"""
