"""tvae_book -- the book pipeline: execute chapters with papermill, collect claims, build the HTML.

Nothing here influences a chapter's numbers (the runner leaves this package out of its
fingerprints).  Entry point: ``python -m tvae_book {run,book,report} --help``.
"""
