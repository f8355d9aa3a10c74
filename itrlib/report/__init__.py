"""Reports: result tables (Markdown/CSV/LaTeX) and the papers' reported numbers."""

from itrlib.report.paper import load_reference, paper_numbers, paper_row
from itrlib.report.tables import STANDARD_COLUMNS, metrics_frame, write_table

__all__ = ["STANDARD_COLUMNS", "load_reference", "metrics_frame", "paper_numbers", "paper_row", "write_table"]
