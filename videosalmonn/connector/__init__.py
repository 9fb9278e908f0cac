"""The trained bridge: synchronisation and the multi-resolution causal Q-Former (paper §3.1-3.2)."""
