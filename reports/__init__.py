"""Reports: a typed per-person report built from storage, rendered as HTML, CSV or JSON."""
