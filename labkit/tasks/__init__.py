"""Tasks: what a candidate vector means, and how a person or a machine judges it."""
