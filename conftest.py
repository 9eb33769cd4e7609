"""For every test and doctest: geometry verdicts are not remembered between runs.

Each test resolves its models' geometry by probing, as a first run does, and nothing is
written into the user's cache folder; the tests of the cache (tests/models/
test_remembered.py) point ``STITCHSAFE_CACHE_DIR`` at a folder of their own. Console
scripts the tests start inherit the setting.
"""

import os

os.environ["STITCHSAFE_CACHE_DIR"] = "off"
