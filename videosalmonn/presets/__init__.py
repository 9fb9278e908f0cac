"""Named model presets (YAML, same tree as `videosalmonn.config.ModelConfig`): `tiny`, `video-salmonn-13b`.

A `--model` is one of these names, a model YAML file, or an export directory holding `model.yaml`
(`ModelConfig.from_name` reads all three; relative `weights.*` paths that exist next to a YAML are read from there).
"""
