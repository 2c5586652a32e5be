"""README's Quickstart runs as written and builds what it says."""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _quickstart_code():
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


# No layer of the Quickstart drops a mask (Keras warns when one does).
@pytest.mark.filterwarnings("error:.*destroy the mask:UserWarning")
def test_quickstart_runs_and_builds_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves model.keras in the working dir
    names = {}
    exec(compile(_quickstart_code(), "README.md (Quickstart)", "exec"), names)

    # The .keras file restores the same function.
    images = np.random.default_rng(0).normal(size=(2, 3, 32, 32))
    np.testing.assert_allclose(names["restored"](images),
                               names["model"](images), rtol=1e-6, atol=1e-6)
    # Padding a token sequence changes neither output at its real steps.
    sequence_model = names["sequence_model"]
    tokens = np.array([[5, 17, 2, 9]])
    padded = np.concatenate([tokens, np.zeros((1, 3), int)], axis=1)
    (pooled, steps), (pooled_padded, steps_padded) = (
        sequence_model(tokens), sequence_model(padded))
    np.testing.assert_allclose(pooled_padded, pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(steps_padded)[:, :4],
                               np.asarray(steps), rtol=1e-5, atol=1e-5)
