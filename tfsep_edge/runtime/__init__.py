"""The light edge runtime: classify with an exported model using numpy and the runtime alone
(no torch at import; torch models are reached lazily through torch_models)."""
