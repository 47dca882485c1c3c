"""Experiments that combine the layers below: the main job (`pipeline`), the paper's Table III / V
ablation and its multi-seed summary (`distill_ablation`, `distill_ablation_seeds`), the embedded
world the robot plays by default (`embedded_world`), the real-house world builder (`real_world`)
and the tiny demo (`tiny_demo`). `minivln_core.commands` only parses arguments for them."""
