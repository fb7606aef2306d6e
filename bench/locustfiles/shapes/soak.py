"""The soak load shape (common/shapes.py): add this file to a suite's -f.

    .venv/bin/locust -f locustfiles/mixed.py,locustfiles/shapes/soak.py --csv results/mixed_soak
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.shapes import Soak  # noqa: F401
