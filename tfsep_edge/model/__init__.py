"""Stage 2: TF-SepNet, its checkpoints (own and reference layouts) and the DCASE budget count."""
