"""Reports from `result.json` records: appendix tables, sweep status, plots. Never imports torch."""
