"""The report of a results folder: the paper's figures (``figures``, ``fig_connections``,
``methods``, ``space``), the four findings with their statistics (``findings``), the tables
of ``report.md`` (``markdown``, ``paper``) and the atomic file writes (``outputs``).
``build.write_report`` writes them all; ``python -m explorer.report RESULTS_DIR`` runs it."""
