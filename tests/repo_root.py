"""The repository's root, for tests that run its scripts or read its files (the test
tree is nested, so a path from a test file's own location would depend on its depth)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
