"""Evaluation: J&F protocols (DAVIS, MeViS / Ref-YouTube-VOS, Ref-DAVIS17), VidSTG, GCG with CLAIR, export, and
the paper's numbers as data. Metric definitions: ``docs/evaluation.md``."""
