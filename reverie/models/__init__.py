"""The trained networks of the system besides the path policy. No Ray.

- `WorldModel`, `WorldModelConfig`, `WORLD_MODELS` (world_model.py): the knowledge-graph
  embedding (PyKEEN ComplEx or RotatE) that shapes the path policy's reward, imagines edges and
  weighs answers in the arbiter.
- `GraphReasoner`, `train_reasoner` (graph_reasoner.py; its `ReasonerConfig` in reasoner_config.py): the
  path-based message-passing network that ranks answers with the arbiter, explains each with its top
  paths and is calibrated on dev.
"""
