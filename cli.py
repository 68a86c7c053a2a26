"""stage1's command line, run from a checkout: ``python cli.py COMMAND`` is ``stage1 COMMAND``.

The command line itself lives in ``stage1/cli.py``; this file only lets a checkout run it without
installing (Python puts this file's folder first on ``sys.path``, so ``stage1`` is found beside it).
"""

import sys

from stage1.cli import main

if __name__ == "__main__":
    sys.exit(main())
