"""A llama-architecture transformer in torch that computes what llama.cpp computes for `llama`:
RMSNorm, interleaved RoPE (pairs 2i, 2i+1), grouped-query attention, SwiGLU, tied output."""

import math

import numpy as np
import torch
import torch.nn.functional as F

import gguf
import tokenizer as tok


class Config:
    def __init__(self, vocab, dim=128, layers=4, heads=4, kv_heads=4, ffn=384,
                 rope_base=10000.0, eps=1e-5):
        self.vocab, self.dim, self.layers, self.heads = vocab, dim, layers, heads
        self.kv_heads, self.ffn, self.rope_base, self.eps = kv_heads, ffn, rope_base, eps

    def as_dict(self):
        return dict(self.__dict__)


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


_ROPE = {}


def rope(x, base):
    """x: (batch, heads, seq, head_dim); rotates pairs (2i, 2i+1) by position * base^(-2i/d)."""
    seq, dim = x.shape[-2], x.shape[-1]
    if (seq, dim, base) not in _ROPE:
        freqs = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        angles = torch.arange(seq, dtype=torch.float32)[:, None] * freqs[None, :]
        _ROPE[(seq, dim, base)] = (angles.cos(), angles.sin())
    cos, sin = _ROPE[(seq, dim, base)]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        head = c.dim // c.heads
        self.c = c
        self.attn_norm = torch.nn.Parameter(torch.ones(c.dim))
        self.q = torch.nn.Linear(c.dim, c.heads * head, bias=False)
        self.k = torch.nn.Linear(c.dim, c.kv_heads * head, bias=False)
        self.v = torch.nn.Linear(c.dim, c.kv_heads * head, bias=False)
        self.o = torch.nn.Linear(c.heads * head, c.dim, bias=False)
        self.ffn_norm = torch.nn.Parameter(torch.ones(c.dim))
        self.gate = torch.nn.Linear(c.dim, c.ffn, bias=False)
        self.up = torch.nn.Linear(c.dim, c.ffn, bias=False)
        self.down = torch.nn.Linear(c.ffn, c.dim, bias=False)

    def forward(self, x, mask):
        c = self.c
        b, n, _ = x.shape
        head = c.dim // c.heads
        h = rms_norm(x, self.attn_norm, c.eps)
        q = self.q(h).view(b, n, c.heads, head).transpose(1, 2)
        k = self.k(h).view(b, n, c.kv_heads, head).transpose(1, 2)
        v = self.v(h).view(b, n, c.kv_heads, head).transpose(1, 2)
        q, k = rope(q, c.rope_base), rope(k, c.rope_base)
        if c.kv_heads != c.heads:
            k = k.repeat_interleave(c.heads // c.kv_heads, dim=1)
            v = v.repeat_interleave(c.heads // c.kv_heads, dim=1)
        scores = torch.baddbmm(mask.expand(b * c.heads, n, n), (q / math.sqrt(head)).reshape(
            b * c.heads, n, head), k.reshape(b * c.heads, n, head).transpose(-1, -2)).view(
            b, c.heads, n, n)
        a = torch.softmax(scores, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, n, -1))
        h = rms_norm(x, self.ffn_norm, c.eps)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c.vocab, c.dim)
        torch.nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = torch.nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = torch.nn.Parameter(torch.ones(c.dim))

    def hidden(self, ids):
        """The final normed hidden states (the logits are these times the embedding)."""
        n = ids.shape[1]
        mask = torch.full((n, n), float("-inf")).triu(1)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, mask)
        return rms_norm(x, self.norm, self.c.eps)

    def forward(self, ids):
        return self.hidden(ids) @ self.embed.weight.T


def export_gguf(model, path, declared_context, name, trained_context=None):
    """Writes the model as a GGUF (f32) whose metadata declares `declared_context`."""
    c = model.c
    t = tok.Tokenizer()
    assert len(t) == c.vocab
    A = lambda p: p.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    metadata = [
        ("general.architecture", gguf.STRING, "llama"),
        ("general.name", gguf.STRING, name),
        ("general.file_type", gguf.U32, 0),
        ("llama.context_length", gguf.U32, declared_context),
        ("llama.embedding_length", gguf.U32, c.dim),
        ("llama.block_count", gguf.U32, c.layers),
        ("llama.feed_forward_length", gguf.U32, c.ffn),
        ("llama.attention.head_count", gguf.U32, c.heads),
        ("llama.attention.head_count_kv", gguf.U32, c.kv_heads),
        ("llama.rope.dimension_count", gguf.U32, c.dim // c.heads),
        ("llama.rope.freq_base", gguf.F32, c.rope_base),
        ("llama.attention.layer_norm_rms_epsilon", gguf.F32, c.eps),
        ("llama.vocab_size", gguf.U32, c.vocab),
        ("tokenizer.ggml.model", gguf.STRING, "llama"),
        ("tokenizer.ggml.tokens", gguf.ARRAY, (gguf.STRING, t.pieces)),
        ("tokenizer.ggml.scores", gguf.ARRAY, (gguf.F32, t.scores)),
        ("tokenizer.ggml.token_type", gguf.ARRAY, (gguf.I32, t.types)),
        ("tokenizer.ggml.unknown_token_id", gguf.U32, tok.UNK),
        ("tokenizer.ggml.bos_token_id", gguf.U32, tok.BOS),
        ("tokenizer.ggml.eos_token_id", gguf.U32, tok.EOS),
        ("tokenizer.ggml.add_bos_token", gguf.BOOL, True),
        ("tokenizer.ggml.add_eos_token", gguf.BOOL, False),
        ("tokenizer.ggml.add_space_prefix", gguf.BOOL, False),
    ]
    if trained_context is not None:
        metadata.append(("lmstrix.trained_context", gguf.U32, trained_context))
    tensors = [("token_embd.weight", A(model.embed.weight))]
    for i, b in enumerate(model.blocks):
        tensors += [
            (f"blk.{i}.attn_norm.weight", A(b.attn_norm)),
            (f"blk.{i}.attn_q.weight", A(b.q.weight)),
            (f"blk.{i}.attn_k.weight", A(b.k.weight)),
            (f"blk.{i}.attn_v.weight", A(b.v.weight)),
            (f"blk.{i}.attn_output.weight", A(b.o.weight)),
            (f"blk.{i}.ffn_norm.weight", A(b.ffn_norm)),
            (f"blk.{i}.ffn_gate.weight", A(b.gate.weight)),
            (f"blk.{i}.ffn_up.weight", A(b.up.weight)),
            (f"blk.{i}.ffn_down.weight", A(b.down.weight)),
        ]
    tensors.append(("output_norm.weight", A(model.norm)))
    gguf.write_gguf(path, metadata, tensors)
