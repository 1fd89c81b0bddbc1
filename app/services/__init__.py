"""The rules of reglab applied to the database, free of HTTP and of Keras. Each service
takes the session keyword-only and owns its commit; it raises the errors of app/errors.py
(never an HTTP exception), which app/main.py answers in one place. The pure rules they
apply live in app/domain/.

experiments.py  submit, find, query (filter, order), edit tags and notes, cancel, delete
queue.py        claims as leases, heartbeats, the end of an attempt, expired leases
claims.py       the long-poll claim
metrics.py      epochs stored once, read back as series; the event replay; per-batch series
summaries.py    per run and metric: best, last, min, max, kept at ingest for queries
params.py       each run's spec values written out once, for queries over params.
scripts.py      runs streamed from users' own scripts
sweeps.py       a sweep queued as runs, read back, cancelled; pruning
datasets.py     uploads received, checked, stored; specs resolved against them
artifacts.py    files received; the trained model stored and served
diagnostics.py  verdicts of stored runs; kernel histograms
workers.py      the workers the server knows and the plugins they offer
"""
