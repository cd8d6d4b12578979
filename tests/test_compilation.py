"""torch.compile where it works, eager with one warning where it does not (e.g. CUDA without a working Triton)."""

import warnings

import pytest
import torch
from torch import nn

from course_lib.compilation import CompiledOrEager


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def no_triton(graph_module, example_inputs):
    raise RuntimeError("Cannot find a working triton installation. Either the package is not installed or it is too old.")


def test_a_backend_that_fails_warns_once_and_the_model_runs_eagerly():
    torch.manual_seed(0)
    model, x = nn.Linear(3, 2), torch.randn(4, 3)
    forward = CompiledOrEager(model, backend=no_triton)
    with pytest.warns(RuntimeWarning, match="torch.compile failed on this machine.*working triton"):
        y = forward(x)
    torch.testing.assert_close(y, model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # once only
        torch.testing.assert_close(forward(x), model(x))


def test_a_working_backend_is_used_and_the_models_own_errors_still_raise():
    calls = []

    def eager_backend(graph_module, example_inputs):
        calls.append(len(example_inputs))
        return graph_module.forward

    model = nn.Linear(3, 2)
    forward = CompiledOrEager(model, backend=eager_backend)
    torch.testing.assert_close(forward(torch.ones(2, 3)), model(torch.ones(2, 3)))
    assert calls, "the backend should have compiled the model"
    with pytest.raises(Exception) as info:
        forward(torch.ones(2, 5))               # a shape error of the model, not a compile failure
    assert not isinstance(info.value, torch._dynamo.exc.BackendCompilerFailed)
