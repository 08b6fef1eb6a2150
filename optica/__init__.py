"""optica."""
