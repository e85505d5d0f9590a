"""``python -m tgsession.testing`` runs a fake Telegram (see ``--help``)."""

import sys

from ._cli import main

sys.exit(main())
