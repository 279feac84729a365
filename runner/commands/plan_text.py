"""`pipe plan`'s result as lines a person reads."""

from __future__ import annotations

from runner.models.adapt import describe as describe_adapted


def render_text(plan, file) -> str:
    """The plan as lines a person reads."""
    lines = [f"plan for {file}", plan.devices.get("summary", "devices: ?")]
    for split, info in plan.data.items():
        size = (f"{info['time_steps']} steps -> {info['num_examples']} windows" if "time_steps" in info
                else f"{info['num_examples']} examples")
        lines.append(f"data.{split}: {size}, {info['steps_per_epoch']} steps per epoch; "
                     f"batch {info['batch']}")
        counts = info.get("class_counts")
        if counts:
            lines.append(f"  classes in the first {counts['sampled_examples']} examples: "
                         + ", ".join(f"{k}: {v}" for k, v in counts["counts"].items()))
    model = plan.model
    if model.get("kind") == "keras":
        lines.append(f"model: {model['class']} {model['name']!r}, inputs {model['inputs']}, outputs {model['outputs']}")
        for layer in model["layers"]:
            lines.append(f"  {layer['name']:<24} {layer['class']:<20} {str(layer['output_shape']):<18} {layer['params']:>10,}")
        params = model["params"]
        lines.append(f"  params: {params['total']:,} ({params['trainable']:,} trainable)")
        lines += describe_adapted(model.get("adapted") or [])
    elif model:
        lines.append(f"model: {model['class']} (tf.Module), {model['params']:,} parameters")
        lines += [f"  {v['name']:<24} {v['shape']} {v['dtype']}" for v in model["variables"]]
    from_data = plan.train.get("from_data")
    if from_data:
        shown = [f"class counts {from_data['class_counts']}"]
        if "class_weight" in from_data:
            shown.append("balanced class_weight {" + ", ".join(f"{k}: {v:.4g}" for k, v in
                                                               from_data["class_weight"].items()) + "}")
        if "output_bias" in from_data:
            bias = from_data["output_bias"]
            shown.append("prior bias " + ", ".join(f"{k} {[round(v, 4) for v in (b if isinstance(b, list) else [b])]}"
                                                   for k, b in bias.items()))
        lines.append("from the train split: " + "; ".join(shown))
    for key in ("loss", "optimizer"):
        if key in plan.train:
            config = plan.train[key]
            lines.append(f"{key}: {config.get('class_name')} {config.get('config')}")
    for phase in plan.train.get("phases") or []:
        lines.append(phase["line"])
    for metric in plan.train.get("metrics", []):
        lines.append(f"metric: {metric['class']} {metric['config']}")
    for callback in plan.train.get("callbacks", []):
        lines.append(f"callback: {callback['class']} {callback['config']}")
    if plan.train.get("loss_on_first_batch"):
        lines.append("loss on the first batch: " + ", ".join(
            f"{split} {value:.5g}" for split, value in plan.train["loss_on_first_batch"].items()))
    return "\n".join(lines)
