"""The text side: tokenizer, LoRA, and the causal LM behind `embed` / `forward` / `generate`."""
