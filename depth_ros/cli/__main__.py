"""``python -m depth_ros.cli`` runs the ``depth-ros`` command line."""

import sys

from depth_ros.cli import main

sys.exit(main())
