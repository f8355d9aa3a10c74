"""Reports: result tables (Markdown/CSV/LaTeX, each with a caption) and the papers' reported numbers."""

from itrlib.suite.report.paper import (
           load_reference,
           paper_numbers,
           paper_row,
           paper_source,
           paper_sweep,
           paper_sweep_note,
)
from itrlib.suite.report.tables import (
           STANDARD_COLUMNS,
           Caption,
           format_frame,
           markdown_table,
           metrics_frame,
           write_table,
)

__all__ = ["STANDARD_COLUMNS", "Caption", "format_frame", "load_reference", "markdown_table", "metrics_frame",
           "paper_numbers", "paper_row", "paper_source", "paper_sweep", "paper_sweep_note", "write_table"]
