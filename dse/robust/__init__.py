"""Decisions under the stated uncertainty: joint Monte Carlo over every stated range, each candidate design's
probability of being Pareto-optimal and feasible, the robust front and the attainment surfaces
(``python -m dse.robust RUN_DIR``)."""
