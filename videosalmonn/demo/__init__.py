"""`videosalmonn demo-ui`: a Gradio page over the same `Pipeline` as everything else (app.py)."""
