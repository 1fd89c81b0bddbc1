"""The pure rules of reglab: no session, no HTTP, no Keras.

verdict.py     over-fitting, still improving, under-fitting or healthy, from a run's
               curves; and a run against the best point of its sweep
winners.py     which sweep point wins by its mean over seeds, and how surely (Welch)
winners_points.py  the points a summary ranks (a setting and its seeds), built from runs
welch.py       Welch's t-test over seeds, without SciPy
spec_paths.py  paths into a spec (`model.layers[*].regularizer.l2`) that sweeps set
sweep_plan.py  the runs a sweep request expands to
uploads.py     reading and checking an uploaded CSV or NPZ file
storage.py     where the server keeps files (paths chosen here, never by a request)
               and how a streamed body is received without being held whole
groups.py      which runs are seed repeats of one configuration
query.py       the run query language (filter, order), parsed by hand into a tree
query_tree.py  the query tree's nodes, QueryError, and a tree's canonical text
query_tokens.py  a query's text as tokens (words, strings, numbers, operators)
query_fields.py  the fields a query names and the kinds of value they hold
query_sql.py   a query tree as SQLAlchemy expressions, on SQLite and PostgreSQL
spec_values.py a spec written out as searchable (path, value) rows

The services (app/services/) apply them to the database.
"""
