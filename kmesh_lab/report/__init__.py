"""The report: ``results/<run_id>/*.json`` -> ``report.md`` + self-contained ``report.html``.

One module per job:

- ``runs``      read a run directory (whatever suites ran) into records
- ``mapping``   which measured metric answers which published figure (one table)
- ``verdict``   compare a measured value with a published figure: reproduced / differs / ...
- ``findings``  the sentences at the top, each generated from the data when the data exist
- ``plots``     matplotlib PNG charts, each only when its data exist
- ``render``    the jinja2 templates, the files, and the CLI
  (``python -m kmesh_lab.report render --run-dir results/<run_id>``)

The output is a pure function of the run's JSON files and reference/published.yml: no
rendering time inside, everything sorted, PNGs written without metadata, so rendering old
results again reproduces the same bytes.
"""
