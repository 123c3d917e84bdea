"""`kdlang taps MODEL`: a model's tappable layers and their output shapes, traced without data."""

from __future__ import annotations


def print_taps(model: str, input_shape: str | None, classes: int | None, usage_error) -> int:
    from kdlang.library import catalog, extensions, models

    prefix, _, name = model.partition(".")
    if prefix not in (*catalog.MODEL_PREFIXES, *extensions.NAMESPACES) or not name:
        hint = f"; {extensions.enable_hint(prefix)}" if name and prefix not in catalog.MODEL_PREFIXES else ""
        raise usage_error(f"name a model as zoo.NAME, tv.NAME, timm.NAME or PLUGIN.NAME, not {model!r}{hint} "
                          "(see `kdlang taps --list`)")
    source = name if prefix == "zoo" else model
    try:
        info = models.info(source)
        shape = tuple(int(x) for x in input_shape.split(",")) if input_shape else tuple(info.input_size)
        module = models.build(source, num_classes=classes or 10, in_channels=shape[0])
        taps = models.list_taps(module, shape)
    except ValueError as exc:
        raise usage_error(f"bad --input {input_shape!r}: give C,H,W such as 3,32,32 ({exc})") from None
    except (KeyError, TypeError, RuntimeError) as exc:
        raise usage_error(str(exc).strip("'\"")) from None
    print(f"{model} on inputs {'x'.join(map(str, shape))}:")
    print(models.format_taps(taps))
    return 0
