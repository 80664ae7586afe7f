"""The bailclio explorer: ``bailclio explore [RUNDIR | RUNS_DIR]`` or
``streamlit run app.py -- [RUNDIR | RUNS_DIR]``. The page lives in :mod:`explorer.page`."""

import sys

from explorer.page import main

main(sys.argv[1:])
