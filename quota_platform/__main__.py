import sys

from quota_platform.cli import main

sys.exit(main())
