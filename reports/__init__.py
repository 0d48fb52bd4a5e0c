"""Reports for operators: drift reports of count sessions (JSON, CSV, charts)."""
