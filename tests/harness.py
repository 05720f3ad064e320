"""One shared check for every bert-tf layer and model class (as keras-hub's
`run_layer_test` / `run_model_saving_test`): its config rebuilds it, a `.keras`
file brings it back with the same outputs, and models keep their weights through a
Google-name checkpoint (a model dir)."""
import os

import keras
import numpy as np


def _numpy(outputs):
    if isinstance(outputs, dict):
        return {k: _numpy(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [_numpy(v) for v in outputs]
    return np.asarray(keras.ops.convert_to_numpy(outputs))


def assert_same_outputs(a, b, atol=0.0):
    a, b = _numpy(a), _numpy(b)
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for key in a:
            assert_same_outputs(a[key], b[key], atol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_outputs(x, y, atol)
    else:
        assert a.shape == b.shape
        if atol:
            np.testing.assert_allclose(a, b, atol=atol, rtol=0)
        else:
            np.testing.assert_array_equal(a, b)


def run_serialization_test(obj, call, tmp_path, wrap_inputs=None):
    """`call(obj)` gives the same outputs for `obj`, for `from_config(get_config())`
    with `obj`'s weights, and for `obj` saved and reloaded as `.keras`.

    `wrap_inputs`: for a layer, the `keras.Input`s of a functional model around it
    (a `.keras` file holds models); `call(layer)` must then accept the model too.
    """
    expected = call(obj)
    config = obj.get_config()
    rebuilt = type(obj).from_config(config)
    if obj.weights:
        call(rebuilt)  # build
        rebuilt.set_weights(obj.get_weights())
    assert rebuilt.get_config() == config
    assert_same_outputs(expected, call(rebuilt))

    saved = obj
    if wrap_inputs is not None:
        saved = keras.Model(wrap_inputs, obj(*wrap_inputs) if isinstance(wrap_inputs, list)
                            else obj(wrap_inputs))
        expected = call(saved)
    path = os.path.join(str(tmp_path), f"{obj.name}.keras")
    saved.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded) is type(saved)
    assert_same_outputs(expected, call(reloaded))
    return reloaded


def run_checkpoint_test(model, call, tmp_path, preprocessor):
    """`model.save_model_dir` then `type(model).from_model_dir`: every weight has a
    Google name, and the reloaded model gives the same outputs."""
    names = model.checkpoint_variables()
    assert len({id(v) for v in names.values()}) == len(model.weights), \
        "a weight without a Google checkpoint name"
    out = model.save_model_dir(os.path.join(str(tmp_path), f"{model.name}-dir"),
                               preprocessor=preprocessor)
    reloaded = type(model).from_model_dir(out)
    assert sorted(reloaded.checkpoint_variables()) == sorted(names)
    assert_same_outputs(call(model), call(reloaded))
    return reloaded
