"""Run history: every run kept in a database, trends across nights, regressions against a
rolling baseline. Downstream of `analysis/`: it reads what a run's folder holds (report.json,
summary.json) and judges nothing of a run; only trends across runs."""
