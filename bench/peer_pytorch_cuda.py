#!/usr/bin/env python3
"""PyTorch peer of bench/cuda_models.cu: the same two models, trained on the same GPU with the
same batch shapes, full fp32 (TF32 off, as mtlm's default), one Adam step per iteration.

Prints one JSON object per model: {"name", "tokens_per_second", "ms_per_step"}.
Usage: python3 bench/peer_pytorch_cuda.py [--steps N]
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, CHAR_VOCAB, CHAR_WIDTH, INTENTS, SLOTS = 1000, 60, 16, 26, 130


class CharCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(CHAR_VOCAB, 30, padding_idx=0)
        self.conv = nn.Conv1d(30, 50, 3, padding=1)

    def forward(self, chars):  # chars: (B, T, W)
        b, t, w = chars.shape
        x = self.embedding(chars.view(b * t, w)).transpose(1, 2)
        return torch.tanh(self.conv(x).max(dim=2).values).view(b, t, 50)


class DemoModel(nn.Module):
    """examples/joint_nlu's model: word + char CNN, dropout, BiLSTM(150 -> 2x128), dropout;
    intent (max pool), slots, both-directions LM (weight 1/2)."""

    def __init__(self):
        super().__init__()
        self.words = nn.Embedding(VOCAB, 100)
        self.chars = CharCnn()
        self.lstm = nn.LSTM(150, 128, batch_first=True, bidirectional=True)
        self.intent = nn.Linear(256, INTENTS)
        self.slots = nn.Linear(256, SLOTS)
        self.lm_forward = nn.Linear(128, VOCAB)
        self.lm_backward = nn.Linear(128, VOCAB)

    def loss(self, tokens, chars, intent, slots):
        x = torch.cat([self.words(tokens), self.chars(chars)], dim=2)
        h, _ = self.lstm(F.dropout(x, 0.3, self.training))
        h = F.dropout(h, 0.3, self.training)
        loss = F.cross_entropy(self.intent(h.max(dim=1).values), intent)
        loss = loss + F.cross_entropy(self.slots(h).flatten(0, 1), slots.flatten())
        fwd, bwd = h[:, :-1, :128], h[:, 1:, 128:]
        lm = F.cross_entropy(self.lm_forward(fwd).flatten(0, 1), tokens[:, 1:].flatten())
        lm = lm + F.cross_entropy(self.lm_backward(bwd).flatten(0, 1), tokens[:, :-1].flatten())
        return loss + 0.5 * lm


class TransformerModel(nn.Module):
    """d_model 512, 6 post-LN layers, 8 heads, FF 2048, ReLU, learned positions; mean-pool
    intent and per-token slot heads."""

    def __init__(self, length):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 512)
        self.positions = nn.Parameter(torch.randn(length, 512) * 0.02)
        layer = nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
        self.intent = nn.Linear(512, INTENTS)
        self.slots = nn.Linear(512, SLOTS)

    def loss(self, tokens, intent, slots):
        h = self.encoder(self.embedding(tokens) + self.positions[: tokens.shape[1]])
        loss = F.cross_entropy(self.intent(h.mean(dim=1)), intent)
        return loss + F.cross_entropy(self.slots(h).flatten(0, 1), slots.flatten())


def measure(model, inputs, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=False)
        model.loss(*inputs).backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(1)
    dev = torch.device("cuda")
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
    for batch in (16, 64):
        length = 24
        tokens = torch.randint(1, VOCAB, (batch, length), device=dev)
        chars = torch.randint(1, CHAR_VOCAB, (batch, length, CHAR_WIDTH), device=dev)
        intent = torch.randint(0, INTENTS, (batch,), device=dev)
        slots = torch.randint(0, SLOTS, (batch, length), device=dev)
        seconds = measure(DemoModel().to(dev), (tokens, chars, intent, slots), args.steps)
        print(json.dumps({"name": f"demo/batch:{batch}", "tokens_per_second": batch * length / seconds,
                          "ms_per_step": 1e3 * seconds}))
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        batch, length = 64, 128
        tokens = torch.randint(1, VOCAB, (batch, length), device=dev)
        intent = torch.randint(0, INTENTS, (batch,), device=dev)
        slots = torch.randint(0, SLOTS, (batch, length), device=dev)
        seconds = measure(TransformerModel(length).to(dev), (tokens, intent, slots), args.steps)
        print(json.dumps({"name": f"transformer/tf32:{int(tf32)}", "tokens_per_second": batch * length / seconds,
                          "ms_per_step": 1e3 * seconds}))


if __name__ == "__main__":
    main()
