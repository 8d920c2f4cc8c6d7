"""python -m leafattack"""

import sys

from leafattack.cli import main

sys.exit(main())
