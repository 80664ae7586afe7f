"""``bailclio report``: the study's figures for detect folders (and a run) as one HTML page."""
