"""Data: manifests (ours and the official format), validated before any work starts."""
