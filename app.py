"""The bailclio explorer: ``bailclio explore [RUNDIR | RUNS_DIR]`` or
``streamlit run app.py -- [RUNDIR | RUNS_DIR]``. The page lives in :mod:`bailclio.explorer.page`;
the installed package ships the same script as ``bailclio/explorer/app.py``."""

import sys

from bailclio.explorer.page import main

main(sys.argv[1:])
