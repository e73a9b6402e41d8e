import sys

from mitogan.cli import main

sys.exit(main())
