"""Frozen encoders: EVA-ViT-g + InstructBLIP Q-Former (vision), Whisper and BEATs (audio)."""
