"""The DCASE budget: the NeSsi count (params, MACs) of the float model and the stored bytes of
any artifact (checkpoint, quantized model, exported file), against the challenge limits."""
