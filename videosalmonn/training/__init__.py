"""Instruction tuning of the connector and LoRA (paper §3.3, §4.3): data and mixing rules, feature cache, the loop,
checkpoints, export. Entry point: `videosalmonn train --config configs/train/NAME.yaml` (see README "Training").

    config.py         TrainConfig tree (strict YAML + dotted overrides)
    mixing.py         mixed unpaired audio-visual training rules (spec §5.2) as pure seeded functions
    data.py           manifests -> validated items -> resumable example stream -> model batches
    features.py       frozen-encoder features of one sample (on the fly), collation into AVFeatures
    cache.py          the feature cache (sharded safetensors keyed by media content hash + instruction)
    loop.py           the training loop (accelerate), cache-features
    checkpointing.py  atomic checkpoints: trainable weights, optimizer, RNG, data position, every file's sha256
    verify.py         resume from the newest intact checkpoint (recorded hashes checked, damaged ones skipped)
    faults.py         a non-finite loss (stop, or skip within optim.max_nonfinite_steps) and a full disk: one line
    feedback.py       progress bar, console, metrics.csv, TensorBoard, W&B
    export.py         official delta, merged Hugging Face model directory
    cli.py            `videosalmonn train | cache-features | export`
"""
