"""Stage 4: one hand-built graph per format from the same quantization points, each validated by
rule.py before the file exists."""
