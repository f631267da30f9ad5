"""Stand-in for ``slicer.testing.runUnitTest`` (Slicer ``Base/Python/slicer/testing.py``).

``slicer_add_python_unittest`` (``CMake/SlicerMacroPythonTesting.cmake``) registers a ctest that runs
``slicer.testing.runUnitTest([binary dir, source dir], '<ModuleName>')``: the module's test cases are loaded
with ``unittest.TestLoader().loadTestsFromName`` (so each ``test_*`` method runs on its own, never
``runTest``) and a failure raises. Here the ``unittest.TestResult`` is also returned, for the tests to read.
"""

from __future__ import annotations

import sys
import unittest


def runUnitTest(path, testname):
    if isinstance(path, str):
        sys.path.append(path)
    else:
        sys.path.extend(path)
    suite = unittest.TestLoader().loadTestsFromName(testname)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        raise Exception("")
    return result
