"""Streaming (recurrent) inference equals batch inference: per sequence and over sliding windows."""

import numpy as np
import pytest
import torch

from vis4mer.windows import pad_window, window_starts
from vis4mer.evaluation import aggregate_windows
from vis4mer.model import MeanPoolBaseline, ViS4mer
from vis4mer.streaming import RecurrentViS4mer, WindowedStream


def _model(l_max, n_layers=3, d_input=6, d_output=3):
    return ViS4mer(d_input=d_input, l_max=l_max, d_output=d_output, d_model=16, n_layers=n_layers, dropout=0.0).eval()


@pytest.mark.parametrize("length", [1, 2, 3, 7, 16, 33])
def test_recurrent_model_equals_batch_forward(length):
    model = _model(l_max=40)
    x = torch.randn(2, length, 6)
    with torch.no_grad():
        expected = model(x)
    recurrent = RecurrentViS4mer(model, slots=2)
    every = torch.ones(2, dtype=torch.bool)
    for t in range(length):
        recurrent.push(x[:, t], every)
    got = recurrent.read_out(every)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_slots_at_different_positions_are_independent():
    model = _model(l_max=20)
    x = torch.randn(12, 6)
    recurrent = RecurrentViS4mer(model, slots=2)
    for t in range(12):  # slot 1 starts 5 tokens later than slot 0
        recurrent.push(x[t].expand(2, -1), torch.tensor([True, t >= 5]))
    got = recurrent.read_out(torch.tensor([True, True]))
    with torch.no_grad():
        assert torch.allclose(got[0], model(x[None])[0], rtol=1e-4, atol=1e-5)
        assert torch.allclose(got[1], model(x[None, 5:])[0], rtol=1e-4, atol=1e-5)


def _batch_prediction(model, frames, window, stride, task_type):
    outputs = []
    for start in window_starts(len(frames), window, stride):
        padded, _ = pad_window(frames[start : start + window].numpy(), window)
        with torch.no_grad():
            outputs.append(model(torch.from_numpy(padded).reshape(1, -1, padded.shape[-1]))[0].numpy())
    return aggregate_windows(np.stack(outputs), task_type)


@pytest.mark.parametrize(("n_frames", "stride"), [(25, 1), (25, 3), (7, 1), (10, 4)])
@pytest.mark.parametrize("task_type", ["classification", "regression"])
def test_windowed_stream_final_equals_batch_evaluation(n_frames, stride, task_type):
    window, tokens = 10, 3
    model = _model(l_max=window * tokens)
    frames = torch.randn(n_frames, tokens, 6)  # [T, tokens, dim]
    stream = WindowedStream(model, window, stride, task_type)
    for frame in frames:
        stream.push_frame(frame)
        assert stream.prediction() is not None
    expected = _batch_prediction(model, frames, window, stride, task_type)
    np.testing.assert_allclose(stream.final(), expected, rtol=1e-4, atol=1e-5)


def test_stream_state_does_not_grow_with_video_length():
    window, tokens = 4, 2
    stream = WindowedStream(_model(l_max=window * tokens), window, 1, "classification")
    sizes = []
    for t in range(40):
        stream.push_frame(torch.randn(tokens, 6))
        if t in (9, 39):
            state = [v for memory in stream.recurrent.blocks for v in memory.values()]
            sizes.append((sum(v.numel() for v in state), len(stream.recent)))
    assert sizes[0] == sizes[1]


def test_streaming_refuses_models_without_a_recurrent_mode():
    with pytest.raises(TypeError, match="ViS4mer"):
        RecurrentViS4mer(MeanPoolBaseline(d_input=6, l_max=10, d_output=2, d_model=8), slots=1)
