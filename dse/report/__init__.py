"""The interactive HTML report of finished searches (:mod:`dse.report.html`, ``python -m dse.report RUN_DIR ...``):
it reads what a search left in its run directory (:mod:`dse.report.runs`; the tables themselves are written by
:mod:`dse.results`) and is checked in headless Chromium (:mod:`dse.report.browser`)."""
