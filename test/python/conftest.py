"""What the three suites share (pytest loads this first): the package is
imported from the sources, sample_clients/python, and finds the library as
a user's program would (LD_LIBRARY_PATH, which meson test sets to the build
folder, or IOCPSRV_LIBRARY).

    LD_LIBRARY_PATH=build/linux python3 -m pytest test/python
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "sample_clients", "python"))
