"""Named model presets (YAML, same tree as `videosalmonn.config.ModelConfig`)."""
