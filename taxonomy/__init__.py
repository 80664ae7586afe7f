"""The taxonomy model (nodes, tree operations) and what reads it: curation, export, assign, diff, eval."""
