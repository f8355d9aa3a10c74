"""Per-paper studies the notebooks run: which runs make up a table or a sweep, and how they are tabulated."""
