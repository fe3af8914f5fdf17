"""The RL agents, each in its own room; what both share: PPO's settings (ppo.py, no Ray) and its loop (training.py).

- path_policy/: the reasoning-path policy that walks the knowledge graph (MINERVA-style), its env,
  network, RLlib module, training, evaluation and the trained bundle.
- lr_control/: the agent that tunes another network's training (learning rate, weight decay) from
  its loss curve: its env, network, module, controllers, training, evaluation, and the trainees
  it steers (trainees/).

Only the `train.py` and `module.py` of each import Ray (RLlib).
"""
