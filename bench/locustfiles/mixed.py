"""The mixed suite: browse, shopper and admin users together, judged as one run.

The user classes keep their weights (Browser 6, Shopper 3, HotReader 2,
Admin 1: of 24 users, 12 browse, 6 buy, 4 read the hot set and 2 change it),
and one verdict covers them all (common/checks.py). Pick classes by name and
tasks by tag, as with any locustfile::

    .venv/bin/locust -f locustfiles/mixed.py --csv results/mixed
    .venv/bin/locust -f locustfiles/mixed.py Browser Admin HotReader
    .venv/bin/locust -f locustfiles/mixed.py --exclude-tags search
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

# By package path, not as siblings: a worker started with `-f -` gets this
# file alone, in a temporary directory, and finds the suites on PYTHONPATH.
from locustfiles.admin import Admin, HotReader  # noqa: F401
from locustfiles.browse import Browser  # noqa: F401
from locustfiles.shopper import Shopper  # noqa: F401
