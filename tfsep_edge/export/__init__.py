"""Stage 4: one export driver (driver.py) with a backend per format, over one description of the
INT8 model (int8_graph.py); every file is validated by rule.py before it exists."""
