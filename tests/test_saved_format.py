"""A model saved by cmvae 0.1.0 (save format 1) must keep loading and predicting the same.

The fixture in tests/fixtures/model_format1 was written once with ``CMVAE.save``; never
regenerate it to make this test pass: a failure means old saved models no longer load.
"""

from pathlib import Path

import numpy as np

from cmvae import CMVAE

FIXTURES = Path(__file__).parent / "fixtures"


def test_model_saved_in_format_1_loads_and_predicts_the_same():
    model = CMVAE.load(FIXTURES / "model_format1")
    data = np.load(FIXTURES / "model_format1_data.npz")
    views = [data["view0"], data["view1"]]
    np.testing.assert_array_equal(model.predict(views), data["predict"])
    np.testing.assert_allclose(model.transform(views), data["transform"], rtol=1e-5, atol=1e-6)
    assert model.n_clusters == 2 and model.shared_dim == 2
