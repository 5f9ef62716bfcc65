"""Training pipeline of the Strand model (training/train.py): batched model passes, data, stages."""
