"""vitbench leaderboard: reads ``results/`` (reproduced records + reported paper numbers) and writes a static site,
Markdown tables and comparison tables. It reads files only; it never runs a model.

>>> from leaderboard.build import build_site
>>> report = build_site(Path("results"), Path("site"))
>>> report.index
PosixPath('site/index.html')
"""
