import sys

from deepres.cli import main

sys.exit(main())
