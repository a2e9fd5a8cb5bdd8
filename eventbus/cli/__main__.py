"""``python -m eventbus.cli``: the ``eventbus`` command."""

import sys

from eventbus.cli._main import main

sys.exit(main())
