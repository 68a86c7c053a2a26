"""``python -m stage1 COMMAND``: the same command line as ``stage1 COMMAND``."""

import sys

from stage1.cli import main

if __name__ == "__main__":
    sys.exit(main())
