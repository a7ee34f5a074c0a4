"""Demo webhook stream for `segflow demo`."""
