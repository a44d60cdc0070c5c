"""``python -m train``: see ``train.cli`` (flags) and ``train.lib`` (the library it calls)."""

import sys

from train.cli import main

sys.exit(main())
