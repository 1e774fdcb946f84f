import sys

from ttscale.cli import main

sys.exit(main())
