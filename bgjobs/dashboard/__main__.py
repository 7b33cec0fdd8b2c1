import sys

from bgjobs.dashboard.server import main

sys.exit(main())
