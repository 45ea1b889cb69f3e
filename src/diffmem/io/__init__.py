"""Reading and writing media, results and reports."""
