"""The Streamlit script that ``bailclio explore`` serves; it ships inside the package, so the
explorer starts from an installed wheel. The page itself is :mod:`bailclio.explorer.page`."""

import sys

from bailclio.explorer.page import main

main(sys.argv[1:])
