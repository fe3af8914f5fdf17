"""The learning-rate control agent: an RLlib PPO agent that watches a network train and changes its
learning rate and weight decay as it goes.

- `LRControlTrainConfig`, `ControlConfig` (config.py); `TrainingControlEnv` (env.py); `LRControlNet`
  (net.py, plain torch); controllers.py (the agent and its rivals: keep, random, LLM, replay);
  train.py (RLlib PPO), evaluate.py (arms against static, cosine and linear schedules).
- trainees/: what it steers: the headline classifier, Ray Tune's PBT toy.
"""
