"""Files -> tensors: decoding, frame sampling, transforms and audio features. No nn.Module, no weights."""
