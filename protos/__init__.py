"""Protocol definitions we own (.proto sources) and their generated modules."""
