"""The explorer: a Streamlit page over run directories (``app.py``; ``bailclio explore``).

``explorer.data`` holds the run-derived tables and queries (no Streamlit), ``explorer.page`` the
page itself.
"""

# How ``bailclio explore`` tells the page what it may serve (read by ``explorer.page``):
ROOTS_ENV = "BAILCLIO_EXPLORER_ROOTS"  # os.pathsep-separated directories the page may open
TOKEN_ENV = "BAILCLIO_EXPLORER_TOKEN"  # the shared secret visitors must give (unset: none asked)
