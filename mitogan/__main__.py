import sys

from mitogan.cli import entry

sys.exit(entry())
