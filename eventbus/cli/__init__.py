"""The application side of eventbus, apart from the library: the ``eventbus`` command.

``eventbus demo | plugins | bench`` (`main`), the demo and its simulator, and
the bench runner. The library (`eventbus`) never imports this package; this
package uses the library's public API and, for the bench, its private plan
caches (the floors must call exactly the callables a bus would).
"""

from eventbus.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
