"""SAVE-mini: a generated speech-audio-visual world that mirrors the SAVE benchmark's tasks, with labels known exactly
because the world made them (docs/savemini.md).

    world.py  seeds -> Scene (scene.py)      frames.py / sound.py / speech.py  Scene -> pixels and samples
    tasks.py  Scenes -> questions + answers   manifests.py  -> files in the SAVE layouts the readers read
    generate.py  `videosalmonn savemini make`: parallel, resumable, deterministic
"""
