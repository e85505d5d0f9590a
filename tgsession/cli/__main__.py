"""``python -m tgsession.cli``: the ``tgsession`` command."""

import sys

from . import main

sys.exit(main())
