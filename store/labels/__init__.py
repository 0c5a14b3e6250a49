"""Human labels of neurons: ``label`` (the Label value, verdicts, checks) and ``db`` (the SQLite
label database, its migrations and backups)."""
