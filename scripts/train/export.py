"""Writes a model's GGUF in LM Studio's layout (<models>/<publisher>/<repo>/<file>.gguf).

    /usr/bin/python3 scripts/train/export.py needle --checkpoint /tmp/needle/checkpoint.pt \\
        --declare 131072 --models tests/fixtures/models
    /usr/bin/python3 scripts/train/export.py random --seed 7 --declare 131072 \\
        --models tests/fixtures/models

`needle`: the trained model (lmstrix/needle-512/needle-512.gguf). `random`: the same architecture
with random weights (lmstrix/random-weights/random-weights.gguf), which loads at any size and
never answers.
"""

import argparse
import os

import torch

import data
import model as M


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["needle", "random"])
    p.add_argument("--checkpoint")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--declare", type=int, required=True)
    p.add_argument("--models", required=True)
    a = p.parse_args()
    if a.kind == "needle":
        state = torch.load(a.checkpoint)
        model = M.Model(M.Config(**state["config"]))
        model.load_state_dict(state["model"])
        length = state["length"]
        repo, trained = f"needle-{length}", length
    else:
        torch.manual_seed(a.seed)
        model = M.Model(M.Config(len(data.TOKENIZER), layers=2))
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    parameter.normal_(0, 0.5)
        repo, trained = "random-weights", None
    folder = os.path.join(a.models, "lmstrix", repo)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, repo + ".gguf")
    M.export_gguf(model, path, a.declare, repo, trained)
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
