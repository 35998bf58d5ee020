"""Reports: who may see whose report, the audit chain, a typed per-person report built from storage and
rendered as HTML, CSV, JSON or PDF, sealed with its SHA-256; the web page and incidents."""
