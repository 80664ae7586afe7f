"""The explorer: a Streamlit page over run directories (``app.py``; ``bailclio explore``).

``explorer.data`` holds the run-derived tables and queries (no Streamlit), ``explorer.page`` the
page itself.
"""
