"""Stage 3: static INT8 quantization (fuse, calibrate, GPTQ, convert), its fake-quant twin, the
saved artifact, and the `tfsep-edge quantize` pipeline with its fidelity report."""
