"""Streaming inference: ViS4mer in recurrent mode, token by token, in memory that does not grow with the video.

`RecurrentViS4mer` runs a batch of independent recurrent copies ("slots") of a ViS4mer model.
Each slot is at its own position, so one slot per overlapping window can be advanced with a
single batched step. Every stage of the model is made causal:
- the S4 layers use their `step` mode;
- AvgPool1d(2) holds the even position and emits the average at the odd one (a lone last
  element is emitted by itself at the end, as ceil_mode does);
- the mean over time is a running sum and count.

`WindowedStream` reproduces evaluation's sliding windows (`window_starts`, summed softmax or
mean) frame by frame. It starts a slot at every stride and reads out the slot when its window
completes. The last window, added when the stride does not land on the end, and the padded
window of a video shorter than one window are known only at the end. Those are scored from a
ring buffer of the last `window_frames` frames, so memory is bounded by one window.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from vis4mer.windows import pad_window, window_starts
from vis4mer.evaluation import aggregate_windows
from vis4mer.model import ViS4mer


class RecurrentViS4mer:
    """`slots` independent recurrent runs of `model` (eval mode, no gradients)."""

    def __init__(self, model: ViS4mer, slots: int):
        if not isinstance(model, ViS4mer):
            raise TypeError(f"streaming needs a ViS4mer model (S4 has a recurrent mode), got {type(model).__name__}")
        self.model = model.eval()
        self.slots = slots
        self.step_params = [block.mixer.step_parameters() for block in model.blocks]
        self.blocks = [self._empty_block(block, params) for block, params in zip(model.blocks, self.step_params)]
        width = model.decoder.in_features
        self.sum = torch.zeros(slots, width, device=self._device)  # running sum of the last block's outputs
        self.count = torch.zeros(slots, device=self._device)

    @property
    def _device(self) -> torch.device:
        return self.model.decoder.weight.device

    def _empty_block(self, block, params) -> dict[str, torch.Tensor]:
        width = block.norm.normalized_shape[0]
        return {
            "state": block.mixer.initial_state(self.slots, params),  # [S, H, N] complex
            "pending": torch.zeros(self.slots, width, device=self._device),  # held even position [S, H]
            "has_pending": torch.zeros(self.slots, dtype=torch.bool, device=self._device),
        }

    def reset(self, mask: torch.Tensor) -> None:
        """Zero the slots in `mask` [S] bool (a new window starts there)."""
        for memory in self.blocks:
            for value in memory.values():
                value[mask] = 0
        self.sum[mask] = 0
        self.count[mask] = 0

    @torch.no_grad()
    def push(self, x: torch.Tensor, active: torch.Tensor) -> None:
        """Advance the `active` [S] slots by one token x [S, d_input] (inactive slots are untouched)."""
        z = self.model.embed(x[:, None, :])[:, 0]  # [S, d_model]
        for block, params, memory in zip(self.model.blocks, self.step_params, self.blocks):
            z, active = self._block_step(block, params, memory, z, active)
            if not active.any():
                return
        self._accumulate(z, active)

    def _block_step(self, block, params, memory, x, active):
        """One position of pre-LN -> S4 step -> residual -> causal pool -> Linear -> GELU."""
        y, state = block.mixer.step(block.norm(x), memory["state"], params)
        memory["state"] = torch.where(active[:, None, None], state, memory["state"])
        z = x + y  # [S, H]
        emit = active & memory["has_pending"]
        out = block.activation(block.project((memory["pending"] + z) / 2))  # [S, H/2]
        memory["pending"] = torch.where((active & ~memory["has_pending"])[:, None], z, memory["pending"])
        memory["has_pending"] = memory["has_pending"] ^ active
        return out, emit

    def _accumulate(self, z: torch.Tensor, active: torch.Tensor) -> None:
        self.sum += torch.where(active[:, None], z, torch.zeros_like(z))
        self.count += active.float()

    @torch.no_grad()
    def read_out(self, mask: torch.Tensor) -> torch.Tensor:
        """Outputs [S, d_output] as if each slot in `mask` ended now (slot states are left as they were).

        At the end, each block emits at most one more element per slot: the average of its
        held element and the element arriving from the block before, or a lone element
        (held or arriving), as ceil_mode pooling does. The flush runs on copies.
        """
        blocks = [{key: value.clone() for key, value in memory.items()} for memory in self.blocks]
        z = None  # element flowing into the next block [S, H_i]
        carry = torch.zeros(self.slots, dtype=torch.bool, device=self._device)
        for block, params, memory in zip(self.model.blocks, self.step_params, blocks):
            if carry.any():
                z, emitted = self._block_step(block, params, memory, z, carry)
            else:
                z, emitted = torch.zeros(self.slots, block.project.out_features, device=self._device), carry
            lone = mask & memory["has_pending"]
            flushed = block.activation(block.project(memory["pending"]))  # [S, H_i/2]
            z = torch.where(lone[:, None], flushed, z)
            carry = emitted | lone
        total = self.sum + torch.where(carry[:, None], z, torch.zeros_like(z))
        count = self.count + carry.float()
        return self.model.decoder(total / count.clamp(min=1)[:, None])


class WindowedStream:
    """Evaluation's sliding windows over a stream of frames, one recurrent slot per open window.

    push_frame(features [tokens, d_input]) per frame; `prediction()` at any time gives the
    aggregate so far (summed softmax or mean over the completed windows, or the oldest open
    window read out as if it ended now); `final()` after the last frame equals
    `aggregate_windows` over `window_starts(n_frames, window_frames, stride_frames)`.
    """

    def __init__(self, model: ViS4mer, window_frames: int, stride_frames: int, task_type: str):
        self.model, self.window, self.stride, self.task_type = model, window_frames, stride_frames, task_type
        self.recurrent = RecurrentViS4mer(model, slots=math.ceil(window_frames / stride_frames))
        self.start = [-1] * self.recurrent.slots  # start frame of each slot's window, -1 when free
        self.frames_seen = 0
        self.total: np.ndarray | None = None  # running sum of per-window contributions [d_output]
        self.n_completed = 0
        self.recent: deque[torch.Tensor] = deque(maxlen=window_frames)  # last frames [tokens, d_input]

    @property
    def _device(self) -> torch.device:
        return self.model.decoder.weight.device

    def _mask(self, slots) -> torch.Tensor:
        mask = torch.zeros(self.recurrent.slots, dtype=torch.bool, device=self._device)
        mask[list(slots)] = True
        return mask

    @torch.no_grad()
    def push_frame(self, features: torch.Tensor) -> None:
        features = features.to(self._device, torch.float32)
        frame = self.frames_seen
        if frame % self.stride == 0:
            slot = (frame // self.stride) % self.recurrent.slots
            self.start[slot] = frame
            self.recurrent.reset(self._mask([slot]))
        active = self._mask(i for i, s in enumerate(self.start) if s >= 0)
        for token in features:  # [d_input]
            self.recurrent.push(token.expand(self.recurrent.slots, -1), active)
        self.frames_seen += 1
        self.recent.append(features)
        finished = [i for i, s in enumerate(self.start) if s >= 0 and s + self.window == self.frames_seen]
        if finished:
            outputs = self.recurrent.read_out(self._mask(finished))
            for slot in finished:
                self._add(outputs[slot].float().cpu().numpy())
                self.start[slot] = -1

    def _add(self, output: np.ndarray) -> None:
        contribution = aggregate_windows(output[None], self.task_type)  # softmax, or the value itself
        self.total = contribution if self.total is None else self.total + contribution
        self.n_completed += 1

    def _aggregate(self, total: np.ndarray, count: int) -> np.ndarray:
        # classification: summed softmax; regression: mean (as aggregate_windows)
        return total if self.task_type == "classification" else total / count

    def prediction(self) -> np.ndarray | None:
        """The aggregate over completed windows, else the oldest open window read out now."""
        if self.n_completed:
            return self._aggregate(self.total, self.n_completed)
        open_slots = [i for i, s in enumerate(self.start) if s >= 0]
        if not open_slots:
            return None
        oldest = min(open_slots, key=lambda i: self.start[i])
        output = self.recurrent.read_out(self._mask([oldest]))[oldest]
        return aggregate_windows(output[None].float().cpu().numpy(), self.task_type)

    @torch.no_grad()
    def final(self) -> np.ndarray:
        """The video-level prediction, equal to batch evaluation over the same frames."""
        if self.frames_seen == 0:
            raise ValueError("no frames were pushed")
        total, count = self.total, self.n_completed
        for start in window_starts(self.frames_seen, self.window, self.stride):
            if start % self.stride == 0 and start + self.window <= self.frames_seen:
                continue  # streamed and already in the running total
            # the end-aligned window, or a short video's padded window: inside the ring buffer
            contribution = aggregate_windows(self._score_recent(start)[None], self.task_type)
            total = contribution if total is None else total + contribution
            count += 1
        return self._aggregate(total, count)

    def _score_recent(self, start: int) -> np.ndarray:
        first_buffered = self.frames_seen - len(self.recent)
        frames = torch.stack(list(self.recent))[start - first_buffered : start - first_buffered + self.window]
        window, _ = pad_window(frames.cpu().numpy(), self.window)  # [W, tokens, d_input]
        x = torch.from_numpy(window).reshape(1, -1, window.shape[-1]).to(self._device)
        return self.model(x)[0].float().cpu().numpy()
