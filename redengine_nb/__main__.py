"""``python -m redengine_nb``: the same as the ``redengine-nb`` command."""

import sys

from redengine_nb.cli import main

sys.exit(main())
