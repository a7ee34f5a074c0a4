"""Segment rules: business-rules variables and operators over CustomerFacts, validation, and
compilation to a Python function, a SQL condition and the next time-based change."""
