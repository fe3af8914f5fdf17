"""The `serve deploy` config shipped in reverie/serve/: valid for Ray Serve, and about this app."""

from pathlib import Path

import yaml

import reverie.serve

CONFIG = Path(reverie.serve.__file__).parent / "config.yaml"


def load():
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))


def test_config_is_a_valid_serve_deploy_config():
    config = load()
    assert config.http_options.host == "127.0.0.1"
    [app] = config.applications
    assert app.import_path == "reverie.serve.app:app_builder" and app.route_prefix == "/"


def test_config_names_every_deployment_of_the_app_and_scales_rollouts_and_encoder(tmp_path):
    from ray.serve._private.build_app import build_app

    from reverie.serve.app import app_builder

    [app] = load().applications
    built = build_app(app_builder({"home": str(tmp_path)}), name=app.name)
    assert {d.name for d in app.deployments} == {d.name for d in built.deployments}
    by_name = {d.name: d for d in app.deployments}
    for scaled in ("Pipeline", "Encoders"):
        autoscaling = by_name[scaled].autoscaling_config
        assert autoscaling["min_replicas"] >= 1 and autoscaling["max_replicas"] > autoscaling["min_replicas"]
    assert all(d.ray_actor_options.num_cpus == 0 for d in app.deployments)  # rollout tasks take the CPUs


def test_app_builder_takes_settings_from_args(tmp_path):
    from ray.serve._private.build_app import build_app

    from reverie.serve.app import app_builder

    built = build_app(app_builder({"home": str(tmp_path), "rollouts": 7}), name="reverie")
    ingress = next(d for d in built.deployments if d.name == "ReverieAPI")
    settings = ingress.init_args[0]
    assert settings["rollouts"] == 7 and settings["home"] == str(tmp_path.resolve())


def test_the_image_deployment_answers_every_call_the_pipeline_makes_of_the_image_actor():
    """The Pipeline calls the ImageEncoder actor and Serve's Encoders deployment alike: every
    method it calls on `images` exists on both."""
    import inspect
    import re

    import reverie.pipeline
    from reverie.encoders.image import ImageEncoder
    from reverie.serve.app import EncodersDeployment

    called = set(re.findall(r"\bimages\.(\w+)\.remote", inspect.getsource(reverie.pipeline)))
    assert {"encode_images", "image_codebook", "image_link_scale"} <= called
    for name in called:
        assert callable(getattr(ImageEncoder, name, None)), name
        assert callable(getattr(EncodersDeployment.func_or_class, name, None)), name
