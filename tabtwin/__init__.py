"""tabtwin: synthetic twins of tables that are faithful, private and useful, with the evidence to prove it.

The four layers install as subpackages of this one name (pyproject's package-dir maps the checkout's top-level
folders here), so nothing generic such as `pipeline` lands in a user's environment:
`tabtwin.pipeline` < `tabtwin.generators` < `tabtwin.evaluation` < `tabtwin.flows`; each imports only from
the layers before it (an import-linter contract in the tests holds that order).
"""

__version__ = "0.1.0"
