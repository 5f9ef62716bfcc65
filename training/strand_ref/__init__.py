"""PyTorch reference of the Strand model (docs/model-spec.md): config, noise, model, session,
tokenizer and safetensors export. The C++ engine's parity tests compare against its outputs."""
