"""What a search leaves in its run directory: the tables and summary (:mod:`dse.report.tables`) and the
self-contained interactive HTML report (:mod:`dse.report.html`, ``python -m dse.report RUN_DIR ...``)."""

from dse.report.tables import (
    NOT_METRICS,
    StudyTable,
    design_key,
    history,
    indicators,
    is_feasible,
    load_reference_front,
    study_table,
    summarise,
    trial_metrics,
    write_csv,
    write_summary,
    write_tables,
)

__all__ = ["NOT_METRICS", "StudyTable", "design_key", "history", "indicators", "is_feasible", "load_reference_front",
           "study_table", "summarise", "trial_metrics", "write_csv", "write_summary", "write_tables"]
