import sys

from realignkit.cli import main

sys.exit(main())
