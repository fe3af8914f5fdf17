"""Ray Tune sweeps: the headline classifier's hyperparameters (ASHA, PBT, PB2) and the path
policy's PPO settings (ASHA). Ray hosts and schedules here; the runs themselves are the Ray-free
trainees and trainers of reverie/models and reverie/policies."""
