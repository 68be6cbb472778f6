"""One process of a 2-process gloo DDP training run (launched by tests/test_training_ddp.py with
MASTER_ADDR/MASTER_PORT/NODE_RANK/LOCAL_RANK set, as a cluster launcher does: two nodes of one
process each, so both processes have local_rank 0). It runs ``instructx2x.training.train.train``
and records, per micro-batch, the global rank, step, the seed of the module's random draws and
the rank's loss to ``<record>.rank<R>.jsonl``."""

import json
import sys

import lightning as L


class Record(L.Callback):
    def __init__(self, path):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(f"{self.path}.rank{trainer.global_rank}.jsonl", "a") as fh:
            fh.write(json.dumps({"rank": trainer.global_rank, "local_rank": trainer.local_rank,
                                 "step": trainer.global_step - 1, "seed": pl_module.last_draw_seed,
                                 "loss": float(outputs["loss"]), "texts": list(batch["text"])}) + "\n")


def main():
    a = json.loads(sys.argv[1])
    from instructx2x.training.train import train

    info = train(a["init"], a["latents"], a["out"], a["cfg"], a["seed"], max_steps=a.get("max_steps"),
                 callbacks=[Record(a["record"])])
    print("RESULT " + json.dumps(info))


if __name__ == "__main__":
    main()
