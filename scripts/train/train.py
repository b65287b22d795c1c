"""Trains the needle model (see docs/engine.md). One thread, as the machine is shared:

    nice -n 10 /usr/bin/python3 scripts/train/train.py --out /tmp/needle --minutes 75 --seed 19

Checkpoints go to <out>/checkpoint.pt every few minutes (export one any time with export.py);
progress and evaluations (exact 7-digit answers by greedy decoding, on the probe's prompts at the
training length and at four times it) to <out>/train.log.
"""

import argparse
import math
import os
import random
import time

import torch
import torch.nn.functional as F

import data
import model as M
import tokenizer as tok


def batch_tensors(samples):
    n = max(len(s[0]) for s in samples)
    ids = torch.full((len(samples), n), tok.EOS, dtype=torch.long)
    weight = torch.zeros((len(samples), n - 1))
    answer = torch.zeros((len(samples), n - 1))
    for i, (seq, start, _value) in enumerate(samples):
        ids[i, :len(seq)] = torch.tensor(seq)
        weight[i, :len(seq) - 1] = 1.0
        answer[i, start - 1:len(seq) - 1] = 1.0 if _value is not None else 0.5
    return ids, weight, answer


def exact(model, samples):
    """How many answers greedy decoding gets exactly (teacher-forced argmax on every answer token
    is what greedy decoding produces while it is right)."""
    right = 0
    with torch.no_grad():
        for seq, start, _value in samples:
            logits = model(torch.tensor([seq[:-1]]))[0]
            guess = logits[start - 1:].argmax(-1).tolist()
            right += guess[:-1] == seq[start:-1]
    return right


def evaluate(model, length, count, seed):
    rng = random.Random(seed)
    samples = []
    while len(samples) < count:
        s = data.probe(rng.randrange(2**31), length, rng.choice(data.DEPTHS))
        if s is not None:
            samples.append(s)
    return exact(model, samples) / count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=75)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--lm-weight", type=float, default=1.0)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=192)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "train.log"), "a")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    config = M.Config(len(data.TOKENIZER), dim=a.dim, layers=a.layers, heads=a.heads,
                      kv_heads=a.heads, ffn=a.ffn)
    model = M.Model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    path = os.path.join(a.out, "checkpoint.pt")
    step, spent = 0, 0.0
    if a.resume and os.path.exists(path):
        state = torch.load(path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, spent = state["step"], state["seconds"]
    say(f"start seed={a.seed} length={a.length} batch={a.batch} lr={a.lr} minutes={a.minutes} "
        f"config={config.as_dict()} params={sum(x.numel() for x in model.parameters())}")
    budget = a.minutes * 60
    started = time.time() - spent
    last_save = last_eval = time.time()
    recent = []
    while True:
        elapsed = time.time() - started
        if elapsed > budget:
            break
        progress = elapsed / budget
        # Curriculum: prompts grow from 128 tokens to the training length over the first 40 %.
        max_tokens = int(96 + (a.length - 96) * min(1.0, progress / 0.45))
        # One length a batch (no padding to speak of), most of them near the top; about 4,096
        # tokens a batch, so short batches hold more samples.
        target = rng.randint(64, max_tokens) if rng.random() < 0.3 else rng.randint(
            max(64, max_tokens * 3 // 4), max_tokens)
        batch = max(a.batch, min(32, 4096 // target))
        warm = min(1.0, step / 100)
        lr = a.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        drills = 0.4 if progress < 0.3 else 0.2
        samples = [data.training_sample(rng, target, drills) for _ in range(batch)]
        ids, weight, answer = batch_tensors(samples)
        # Logits only where a loss is taken: every answer token and one position in eight.
        hidden = model.hidden(ids[:, :-1]).reshape(-1, config.dim)
        weight = weight * (torch.rand(weight.shape) < 0.125)
        keep = ((weight + answer) > 0).reshape(-1).nonzero().squeeze(1)
        logits = hidden[keep] @ model.embed.weight.T
        ce = F.cross_entropy(logits, ids[:, 1:].reshape(-1)[keep], reduction="none")
        w, an = weight.reshape(-1)[keep], answer.reshape(-1)[keep]
        lm = (ce * w).sum() / w.sum().clamp(min=1)
        ans = (ce * an).sum() / an.sum()
        loss = a.lm_weight * lm + 4 * ans
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent.append((lm.item(), ans.item()))
        if step % 50 == 0 or step < 4:
            lms, anss = zip(*recent[-50:])
            say(f"step {step} t={elapsed / 60:.1f}m max={max_tokens} lr={lr:.2e} "
                f"lm={sum(lms) / len(lms):.3f} answer={sum(anss) / len(anss):.3f}")
        if time.time() - last_save > 180:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "seconds": time.time() - started, "config": config.as_dict(),
                        "seed": a.seed, "length": a.length}, path + ".tmp")
            os.replace(path + ".tmp", path)
            last_save = time.time()
        if time.time() - last_eval > 600:
            model.eval()
            at1 = evaluate(model, a.length, 20, 1)
            at4 = evaluate(model, 4 * a.length, 20, 2)
            model.train()
            say(f"eval step {step} t={elapsed / 60:.1f}m exact@{a.length}={at1:.2f} "
                f"exact@{4 * a.length}={at4:.2f}")
            last_eval = time.time()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "seconds": time.time() - started, "config": config.as_dict(), "seed": a.seed,
                "length": a.length}, path)
    model.eval()
    say(f"done step {step} exact@{a.length}={evaluate(model, a.length, 50, 1):.2f} "
        f"exact@{4 * a.length}={evaluate(model, 4 * a.length, 50, 2):.2f}")


if __name__ == "__main__":
    main()
