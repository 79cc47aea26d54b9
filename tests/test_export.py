"""digits export: ONNX, LiteRT and SavedModel copies that answer as the Keras model does, and the
shipped ONNX models that predict and serve run without TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digits import data, runs
from digits.cli import main
from digits.inference import (
    DEFAULT_MODEL,
    KerasClassifier,
    ModelError,
    OnnxClassifier,
    load_classifier,
    load_uncalibrated,
)

REPO = Path(__file__).resolve().parent.parent
#: Every model the project ships: an ONNX file beside each Keras one.
SHIPPED = [DEFAULT_MODEL.parent, *sorted(p.parent for p in (REPO / "models").glob("*/model.keras"))]
#: Exports must give the Keras model's probabilities to within this.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def mnist_test(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    (_, _), (x_test, y_test) = data.load_mnist(mnist_dir)
    return data.scale(x_test), y_test


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory) -> Path:
    """A copy of the default model's run folder without its ONNX file, to export from."""
    folder = tmp_path_factory.mktemp("run")
    for name in ("model.keras", "config.json", "metrics.json", "calibration.json"):
        shutil.copy(DEFAULT_MODEL.parent / name, folder / name)
    return folder


def _litert_probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    model_input = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(model_input["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(model_input["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _saved_model_probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its function needs the object's variables alive
    return loaded.serve(x).numpy()


@pytest.mark.slow
@pytest.mark.parametrize(
    "format, runtime",
    [
        ("onnx", lambda path, x: OnnxClassifier(path).predict_proba(x)),
        ("litert", _litert_probabilities),
        ("saved_model", _saved_model_probabilities),
    ],
)
def test_an_export_answers_as_the_keras_model_on_the_mnist_test_set(
    format, runtime, keras_run, mnist_test, tmp_path, capsys
):
    x_test, _ = mnist_test
    out = tmp_path / "exported" / {"onnx": "m.onnx", "litert": "m.tflite", "saved_model": "m"}[format]
    assert main(["export", str(keras_run), "--format", format, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"to {out}")
    expected = KerasClassifier(keras_run / "model.keras").predict_proba(x_test)
    difference = np.abs(runtime(out, x_test) - expected).max()
    assert difference < TOLERANCE, f"{format}: differs from Keras by {difference:.2e}"


def test_an_onnx_export_into_the_run_folder_is_what_the_run_then_answers_with(keras_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(keras_run, run)
    assert main(["export", str(run), "--format", "onnx"]) == 0
    classifier = load_classifier(run)
    # Calibrated (calibration.json applies to it) and named as the run.
    assert isinstance(classifier.classifier, OnnxClassifier)
    assert classifier.name == runs.read_config(run).model
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    keras = load_classifier(run / "model.keras").predict_proba(x)
    assert np.abs(classifier.predict_proba(x) - keras).max() < TOLERANCE


def test_an_onnx_file_exported_elsewhere_takes_the_run_files_with_it(keras_run, tmp_path):
    out = tmp_path / "deploy" / "model.onnx"
    assert main(["export", str(keras_run), "--format", "onnx", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "calibration.json",
        "config.json",
        "metrics.json",
        "model.onnx",
    ]
    assert load_classifier(out.parent).not_a_digit_below > 0


def test_an_ensemble_of_keras_models_exports_as_their_average(keras_run, tmp_path):
    from digits.inference import EnsembleClassifier

    # The served model and the best single model: two members of one architecture, one layer name.
    best = REPO / "models" / "deep-cnn-ema-e40-seed3" / "model.keras"
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    members = [str(keras_run / "model.keras"), str(best)]
    (ensemble / "ensemble.json").write_text(json.dumps({"members": members}))
    assert main(["export", str(ensemble), "--format", "onnx"]) == 0
    x = np.random.default_rng(1).random((16, 28, 28, 1), dtype=np.float32)
    expected = EnsembleClassifier.load(ensemble / "ensemble.json").predict_proba(x)
    assert np.abs(OnnxClassifier(ensemble / "model.onnx").predict_proba(x) - expected).max() < TOLERANCE


def _one_line_error(err: str, text: str) -> bool:
    return err.startswith("digits: error: ") and text in err and err.count("\n") == 1


def test_what_cannot_be_exported_is_refused_in_one_line(keras_run, tmp_path, capsys):
    tta = tmp_path / "tta"
    tta.mkdir()
    (tta / "ensemble.json").write_text(json.dumps({"members": [str(keras_run)], "tta": True}))
    onnx_only = tmp_path / "onnx-only"
    onnx_only.mkdir()
    shutil.copy(DEFAULT_MODEL, onnx_only / "model.onnx")
    for model, args, message in (
        (tta, [], "only an ensemble of Keras models without test-time shifts exports"),
        (onnx_only, [], "an ONNX model; only Keras models (.keras) export"),
        (keras_run, ["--out", str(keras_run / "model.keras")], "already exists; remove it or choose"),
    ):
        assert main(["export", str(model), "--format", "onnx", *args]) == 1
        assert _one_line_error(capsys.readouterr().err, message)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(keras_run), "--format", "pmml"])
    assert exit_.value.code == 2 and "invalid choice: 'pmml'" in capsys.readouterr().err


def test_a_model_that_is_not_an_mnist_model_is_refused_in_one_line(tmp_path, capsys):
    import keras

    five = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
    five.save(tmp_path / "five.keras")
    flat = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    flat.save(tmp_path / "flat.keras")
    with pytest.raises(ModelError, match=r"takes \(N, 28, 28, 1\) to \(N, 5\); an MNIST model takes"):
        load_classifier(tmp_path / "five.keras")
    five(np.zeros((1, 28, 28, 1), np.float32))
    five.export(str(tmp_path / "five.onnx"), format="onnx", verbose=False)
    with pytest.raises(ModelError, match=r"five.onnx: takes \(N, 28, 28, 1\) to \(N, 5\)"):
        OnnxClassifier(tmp_path / "five.onnx")
    image = tmp_path / "one.npy"
    np.save(image, np.zeros((28, 28), np.float32))
    assert main(["predict", str(tmp_path / "flat.keras"), str(image)]) == 1
    assert _one_line_error(capsys.readouterr().err, r"flat.keras: takes (N, 784) to (N, 10)")


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_onnx_model_answers_as_its_keras_model(folder, mnist_test):
    x = mnist_test[0][:2000]
    onnx = load_uncalibrated(folder)
    assert isinstance(onnx, OnnxClassifier), f"{folder}: no model.onnx (digits export {folder} --format onnx)"
    keras = KerasClassifier(folder / "model.keras")
    difference = np.abs(onnx.predict_proba(x) - keras.predict_proba(x)).max()
    assert difference < TOLERANCE, f"{folder}/model.onnx is stale: re-export it from its model.keras"


@pytest.mark.slow
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_model_keeps_its_test_accuracy_through_onnx_runtime(folder, mnist_test):
    from digits import runs

    x_test, y_test = mnist_test
    accuracy = float((load_uncalibrated(folder).predict_proba(x_test).argmax(axis=1) == y_test).mean())
    assert accuracy == pytest.approx(runs.read_metrics(folder).test_accuracy, abs=1e-12)


#: Run in a fresh interpreter in which importing TensorFlow, Keras or scikit-learn fails.
_WITHOUT_TRAINING_LIBRARIES = """
import sys
for name in ("tensorflow", "keras", "sklearn", "matplotlib"):
    sys.modules[name] = None  # import fails: ModuleNotFoundError
"""


def test_predicting_never_imports_tensorflow(tmp_path, mnist_dir):
    image = tmp_path / "seven.npy"
    (_, _), (x_test, y_test) = data.load_mnist(mnist_dir)
    np.save(image, x_test[0])
    script = (
        _WITHOUT_TRAINING_LIBRARIES
        + f"""
from digits.cli import main
sys.exit(main(["predict", "--json", {str(image)!r}]))
"""
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digit"] == y_test[0]


def test_serving_never_imports_tensorflow():
    script = (
        _WITHOUT_TRAINING_LIBRARIES
        + """
import base64, io
import numpy as np
from PIL import Image
from starlette.testclient import TestClient
from digits.server import create_app

image = np.zeros((28, 28), np.uint8)
image[4:24, 13:16] = 255
png = io.BytesIO()
Image.fromarray(image).save(png, format="PNG")
with TestClient(create_app()) as client:
    answer = client.post("/api/predict", files={"file": ("one.png", png.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert client.get("/api/model").json()["file"] == "model.onnx"
print(answer.json()["digit"])
"""
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_training_commands_without_the_training_libraries_say_what_to_install(tmp_path):
    script = (
        _WITHOUT_TRAINING_LIBRARIES
        + f"""
from digits.cli import main
sys.exit(main(["train", "--epochs", "1", "--out", {str(tmp_path / "run")!r}]))
"""
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == (
        "digits: error: digits train needs the training libraries (TensorFlow, scikit-learn):"
        " pip install 'digits[train]'\n"
    )


def test_a_keras_model_without_tensorflow_is_refused_in_one_line(tmp_path):
    image = tmp_path / "one.npy"
    np.save(image, np.zeros((28, 28), np.float32))
    keras_file = DEFAULT_MODEL.with_name("model.keras")
    script = (
        _WITHOUT_TRAINING_LIBRARIES
        + f"""
from digits.cli import main
sys.exit(main(["predict", {str(keras_file)!r}, {str(image)!r}]))
"""
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "a Keras model needs TensorFlow (pip install 'digits[train]'); or run its ONNX" in done.stderr


# ---------------------------------------------------------------------------- model files from strangers


class _RunsACommand:
    """Unpickling this runs a shell command: what a crafted model.joblib does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["model.joblib", "model.pkl"])
def test_a_pickled_model_is_refused_and_runs_nothing(name, tmp_path, capsys):
    import pickle

    marker = tmp_path / "code-ran"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / name).write_bytes(pickle.dumps(_RunsACommand(marker)))
    image = tmp_path / "one.npy"
    np.save(image, np.zeros((28, 28), np.float32))
    model = tmp_path / "run" if name == "model.joblib" else tmp_path / "run" / name
    assert main(["predict", str(model), str(image)]) == 1
    assert _one_line_error(capsys.readouterr().err, "a pickle, which can run any code when loaded")
    assert not marker.exists()


def test_a_skops_model_naming_code_from_elsewhere_is_refused_before_it_is_built(tmp_path):
    import os

    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    skops.io.dump(make_pipeline(FunctionTransformer(os.system)), tmp_path / "model.skops")
    with pytest.raises(
        ModelError, match=r"model.skops: refers to .*system.*which loading could run; not loaded"
    ):
        load_classifier(tmp_path / "model.skops")


def test_a_keras_model_with_python_code_in_it_is_refused(tmp_path, capsys):
    import keras

    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Lambda(lambda x: x[:, :10])]
    )
    model.save(tmp_path / "model.keras")
    with pytest.raises(ModelError, match="model.keras: not a readable model file"):
        load_classifier(tmp_path / "model.keras")
